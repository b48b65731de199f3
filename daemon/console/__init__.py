"""The care team's console (`crs-hub console`): runs at the clinic, not on a hub.

It speaks only the documented MQTT contract (daemon/topics.py, daemon/payloads.py): it reads the
hubs' retained status, alert state and wearable status, their alert events and vitals, keeps its
own SQLite history, serves a web page for nurses, and publishes acknowledgements on
``<prefix>/<hub>/<patient>/alert/ack/<nurse>`` over the nurse's own broker login.
"""
