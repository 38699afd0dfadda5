"""Live order changes for watching pages and partners: server-sent events fed by a Redis stream.

- :mod:`.announce`: after a unit of work commits an order change, one ``XADD`` to the service's stream
  (``<redis prefix>:live:<service>``, trimmed to about ``live_stream_maxlen`` entries).
- :mod:`.hub`: one task per process reads the stream (``XREAD BLOCK``) and hands each entry to the
  in-process subscribers of its topics (bounded queues; one that falls behind is dropped and reconnects).
- :mod:`.sse`: the ``text/event-stream`` response: resumes after ``Last-Event-ID`` (the stream entry id)
  from the stream, heartbeats, limits per client and per process, closes when the process drains.
"""

# Paths of long-lived event streams end so: load shedding counts them apart from requests.
STREAM_SUFFIXES = ("/events", "/stream")
