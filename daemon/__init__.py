"""crs-hub: watches patients at home after immunotherapy for early signs of cytokine release syndrome.

Not a certified medical device. Data flows one way:
wearable -> decoding -> readings -> rules -> alerts -> outbox -> MQTT.
"""

__version__ = "0.1.0"
