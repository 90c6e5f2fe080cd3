"""The protected-namespace token scheme, implemented independently in Python.

Used to check that statemanager's tokens and the reference scheme agree in both directions
(see opsview-compat.md): base64(IV(16) ‖ AES-CBC(key, IV, PKCS7("namespace=<ns>&timestamp=<s>"))
‖ HMAC-SHA256(key, IV ‖ ciphertext)), with the same key bytes for AES and HMAC.

    python3 token_compat.py mint KEY_B64 NAMESPACE [TIMESTAMP]     -> prints a token
    python3 token_compat.py verify KEYS_B64_COMMA TOKEN [MARGIN]    -> prints the namespace
Needs the `cryptography` package.
"""

import base64
import hashlib
import hmac
import os
import sys
import time

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def mint(key_b64, namespace, timestamp=None):
    key = base64.b64decode(key_b64)
    if timestamp is None:
        timestamp = int(time.time())
    plaintext = "namespace={}&timestamp={}".format(namespace, timestamp).encode("ascii")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    tag = hmac.new(key, iv + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(iv + ciphertext + tag).decode("ascii")


def verify(keys_b64, token, margin=30):
    raw = base64.b64decode(token, validate=True)
    signed, tag = raw[:-32], raw[-32:]
    for key_b64 in keys_b64.split(","):
        key = base64.b64decode(key_b64)
        if not hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), tag):
            continue
        iv, ciphertext = signed[:16], signed[16:]
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plaintext = (unpadder.update(padded) + unpadder.finalize()).decode("ascii")
        fields = dict(part.split("=", 1) for part in plaintext.split("&"))
        if margin and abs(int(fields["timestamp"]) - time.time()) > margin:
            raise SystemExit("expired")
        return fields["namespace"]
    raise SystemExit("no key verifies this token")


if __name__ == "__main__":
    if sys.argv[1] == "mint":
        ts = int(sys.argv[4]) if len(sys.argv) > 4 else None
        print(mint(sys.argv[2], sys.argv[3], ts))
    elif sys.argv[1] == "verify":
        margin = int(sys.argv[4]) if len(sys.argv) > 4 else 30
        print(verify(sys.argv[2], sys.argv[3], margin))
    else:
        raise SystemExit("usage: mint KEY NS [TS] | verify KEYS TOKEN [MARGIN]")
