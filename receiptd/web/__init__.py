"""The HTTP listener both ports run on (``server``: waitress in a background thread) and what
one client can hold of it (``connections``)."""
