"""Receiver variants of Contact ID frames (issue 17), recorded in ``tests/data/serial/``
(sources in its README), each with its canonical form: digit qualifier, space separator.
Shared by the codec's unit tests and the pty tests, so both check the same list."""

RECEIVER_VARIANTS: list[tuple[str, bytes]] = [
    ("olarm_130_letter_qualifier.bin", b"501E 180766113001002"),
    ("mlr2e_121_duress_letter_qualifier.bin", b"5011 181234112101001"),
    ("pendant_101_restore_letter.bin", b"5011 181234310100015"),
    ("smoke_111_previous_letter.bin", b"5011 181234611101003"),
    ("medical_100_hex_digits_letter.bin", b"5011 18BC2F11000BDEF"),
    ("duress_121_clock_letter.bin", b"5011 18123411210100123:59:07-31/12"),
]
