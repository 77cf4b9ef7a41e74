"""What comes in: receipts and replies from the MNS queues (``mns``) or pushed over HTTP
(``push``), with the poison isolation both share (``poison``), and the records of sends made
by other systems (``registration``: ``receiptd sends import`` and ``POST /v1/sends``)."""
