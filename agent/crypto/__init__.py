"""Pure crypto for the platforms: RSA, 3DES, AES, digests, SM2/SM3/SM4, encodeURI; no I/O.

Every failure caused by a key, IV or ciphertext raises `agent.errors.CryptoError` naming the
setting it came from (the caller passes `setting=`), never a library's own exception.
"""

from __future__ import annotations

from agent.errors import CryptoError

__all__ = ["CryptoError"]
