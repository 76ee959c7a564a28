"""Content-addressed blob storage shared by both planes: the control plane writes, the data plane reads.

Blobs are addressed by ``sha256:<hex>`` and verified on every read.
"""

from mlpilot.blobs.local import BlobStore, VerifiedBlob, sha256_file

__all__ = ["BlobStore", "VerifiedBlob", "sha256_file"]
