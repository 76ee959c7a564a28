"""Wire types shared by both planes: OIP v2 datatypes and model signatures (no I/O, no plane imports)."""

from mlpilot.protocol.signature import DATATYPES, Signature, TensorSpec, datatype_of, infer_signature

__all__ = ["DATATYPES", "Signature", "TensorSpec", "datatype_of", "infer_signature"]
