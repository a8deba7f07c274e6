"""Names of the node-local event-log streams the pipeline actors exchange data through.

The log is the bus: producers append in group commits, consumers read after their offset in their own
process and write outputs and their new offset in one durable transaction (exactly once across crashes).
Thespian only carries control.
"""

# a block of readings per record (models/readings.py), or one reading {"sensor", "pollutant", "ts", "value",
# "unit", "location", "source", "ingested_at"}
READINGS = "readings"
PROPOSED_INCIDENTS = "incidents/proposed"  # incident records, possibly duplicated by replays
COMMITTED_INCIDENTS = "incidents/committed"  # {"index", "incident"}: ordered, each incident_id once


def offset_key(consumer: str) -> str:
    return f"offset/{consumer}"


def dead_letter_stream(component: str) -> str:
    return f"deadletters/{component}"
