"""In-memory twins of the ports (receiptd.ports), for unit tests without sockets."""
