#!/usr/bin/env bash
# Give one hub its own RabbitMQ account, confined to its own tec/v1/<hub_id>/ subtree.
#   provision-hub.sh HUB_ID PASSWORD_FILE [VHOST]
# RabbitMQ checks MQTT topics as AMQP routing keys ('/' becomes '.'), so the patterns below
# use '.'; hub ids contain no '.' (check-config refuses one: it would become a level).
set -euo pipefail
hub="$1"; pwfile="$2"; vhost="${3:-/}"
case "$hub" in *.*|*/*|*+*|*#*) echo "bad hub id: $hub" >&2; exit 2;; esac
ctl() { rabbitmqctl "$@" >/dev/null; }
if rabbitmqctl list_users --silent | cut -f1 | grep -qx "$hub"; then
    ctl change_password "$hub" "$(head -n1 "$pwfile")"
else
    ctl add_user "$hub" "$(head -n1 "$pwfile")"
fi
# Resources: only its own session queues (client id tec-agent-<hub_id>, the agent's default)
# and the MQTT exchange.
q="^mqtt-subscription-tec-agent-${hub}qos[01]\$"
ctl set_permissions -p "$vhost" "$hub" "$q" "$q|^amq\.topic\$" "$q|^amq\.topic\$"
# Topics: publish its events, status, device state and answers; read its config pushes
# and commands. {username} is expanded by RabbitMQ.
ctl set_topic_permissions -p "$vhost" "$hub" amq.topic \
    '^tec\.v1\.{username}\.(event|status|device\.[^.]+|config\.(result|current|request)|cmd\.[^.]+\.result)$' \
    '^tec\.v1\.{username}\.(config\.(set|desired)|receipt|cmd\.(\*|[^.]+))$'
echo "hub $hub provisioned"
