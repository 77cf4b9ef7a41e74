"""MNS ingestion: long polls on the SmsReport/SmsUp queues (``consumer``, ``polling``), then
each received batch decoded, committed and deleted (``batch``)."""
