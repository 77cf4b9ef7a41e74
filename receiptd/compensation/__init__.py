"""Compensation: the cycle that asks the provider about sends still without a receipt
(``cycle``), which queries cover which sends (``planning``), when to stop asking
(``horizon``) and the bound on provider calls (``ratelimit``)."""
