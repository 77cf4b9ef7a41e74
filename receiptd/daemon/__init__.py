"""The daemon around the flows: loops, supervised jobs and the stop order (``service``),
signals, systemd notifications and watchdog (``sd_notify``) and the ops endpoint
(``ops``: /healthz, /readyz, /metrics, the status API and ``POST /v1/sends``)."""
