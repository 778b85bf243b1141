"""The documented key derivations, written without the engine: HKDF-SHA-256 (RFC 5869) with a
zero salt, a pseudonymisation domain's key (info "ehds-prep pseudonymisation domain v1\\0" and the
domain's context), and a person's date shift (HMAC-SHA-256 of "ehds-prep date shift v1\\0" and the
normalised person, its first 8 bytes big-endian modulo the allowed shifts, 0 skipped)."""
import hashlib
import hmac


def hkdf_sha256(ikm, info, length=32):
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block, i = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm += block
        i += 1
    return okm[:length]


def domain_key(key, context):
    return hkdf_sha256(key, b"ehds-prep pseudonymisation domain v1\x00" + context.encode())


def shift_days(skey, person, low, high):
    digest = hmac.new(skey, b"ehds-prep date shift v1\x00" + person.encode(), hashlib.sha256).digest()
    choices = high - low + 1 - (1 if low <= 0 <= high else 0)
    s = low + int.from_bytes(digest[:8], "big") % choices
    return s + 1 if low <= 0 and s >= 0 else s
