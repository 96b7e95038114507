"""The published signature vectors (``devkit/crusoe_api/README.md``).

The product's signing tests and the emulator's verifier tests share them, so both are held to the same rows.
"""

SECRET_KEY = "HrbZ3VTUb2YNAq53Md1EsA"

# (method, path, raw query, X-Crusoe-Timestamp, expected signature)
VECTORS = [
    ("POST", "/v1alpha5/ccr/tokens", "", "2025-10-01T12:00:00Z", "uY_z7R2GzWzu5M-qrp2N_BoYo_HUTwCl7EMn4KsI8h4"),
    ("POST", "/v1alpha5/ccr/tokens", "", "2025-10-01T12:00:00+00:00", "46YvJR8fNz8X9BuN3ia9GMTi7_RO4gxWNY-9c8obK-8"),
    (
        "GET",
        "/v1alpha5/users/limited-usage-api-key",
        "",
        "2025-10-01T12:00:00Z",
        "CIuyiepotjJ3qazLFKHHqwr34PZh19hDR0EQNUIMHSg",
    ),
    (
        "DELETE",
        "/v1alpha5/users/limited-usage-api-key",
        "key_id=abc",
        "2025-10-01T12:00:00Z",
        "5ZEEa38WFDarAudiDLobBzVLz5iT30WsCViVl0ingIA",
    ),
    (
        "DELETE",
        "/v1/users/limited-usage-api-key",
        "key_id=abc",
        "2025-10-01T12:00:00Z",
        "x1WCh9fM5kLNMnvdpWG0B5pxZgVWZGduSDwZQD3mPHA",
    ),
    (
        "GET",
        "/v1alpha5/x",
        "b=2&a=hello world&a=1",
        "2025-10-01T12:00:00Z",
        "qZgSDKAaL_MnhZ0kaRkY6I8__c84H4mcKwOLJJVZhKM",
    ),
]

# (raw query, canonical form): the re-encoding rules both the product's signer and the emulator must follow.
CANONICAL_QUERIES = [
    ("", ""),
    ("b=2&a=hello world&a=1", "a=hello+world&a=1&b=2"),
    ("&&a=1&", "a=1"),
    ("flag", "flag="),
    ("k=a%2Bb%2Fc", "k=a%2Bb%2Fc"),
    ("key_id=Hm11C1coQZm2%2BAihn9ofYg", "key_id=Hm11C1coQZm2%2BAihn9ofYg"),
    ("k=a/b", "k=a%2Fb"),
    ("k=a+b", "k=a+b"),
    ("k=~-_.", "k=~-_."),
    ("k=%c3%a9", "k=%C3%A9"),
    ("x=1=2", "x=1%3D2"),
]
