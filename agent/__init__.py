"""tec-agent: edge agent for in-home Technology Enabled Care hubs."""

__version__ = "0.1.0"
