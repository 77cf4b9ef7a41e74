"""receiptd: the SMS delivery-receipt daemon for Alibaba Cloud SMS and Huawei KooMessage."""

from importlib import metadata

from receiptd import _moved

_moved.install()  # the module paths before the regroup, for one more release

try:
    __version__ = metadata.version("receiptd")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
