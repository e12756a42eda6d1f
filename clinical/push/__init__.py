"""Push: every visit transition told to the apps and the live queues over websockets, on commit.

``publish`` appends what changed to a Redis stream once the transaction commits (only ids: the
stream is a doorbell, PostgreSQL is the record). ``relay`` (``python manage.py push_relay``)
reads the stream, builds each message from PostgreSQL (``messages``) and hands it to the channel
layer's groups; the consumers (``clinical.api.consumers`` for the apps, ``ops_console.consumers``
for the live queues) deliver it. A client that missed messages resumes from PostgreSQL.
"""
