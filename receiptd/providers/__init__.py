"""Provider adapters, one package per external provider.

Each implements the ports it serves (``ports.StatusLookup``, ``ports.ReceiptQueue``) over the
provider's own SDK and takes small parameter objects, never ``Settings``; ``receiptd.wiring``
builds them. No SDK exception type leaves a provider package.
"""
