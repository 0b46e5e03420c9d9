"""Per-device attributes derived from ``user_id`` by hashing: the same user always has the same device.

Nothing per user is stored (30M users would need a large table): each attribute is picked from a
small weighted catalogue with bits of a 64-bit hash of the user id, vectorised over numpy arrays.
"""

from __future__ import annotations

import numpy as np

# (os, os_version weights, models with weights). Shares roughly follow public mobile-OS statistics.
_OS: dict[str, tuple[float, tuple[tuple[str, float], ...], tuple[tuple[str, float], ...]]] = {
    "android": (
        0.71,
        (("15", 0.30), ("14", 0.30), ("13", 0.20), ("12", 0.12), ("11", 0.08)),
        (
            ("Samsung Galaxy S24", 0.12),
            ("Samsung Galaxy A54", 0.14),
            ("Samsung Galaxy A15", 0.12),
            ("Google Pixel 8", 0.06),
            ("Google Pixel 7a", 0.05),
            ("Xiaomi Redmi Note 13", 0.13),
            ("Xiaomi 14", 0.05),
            ("OnePlus 12", 0.04),
            ("Oppo A78", 0.08),
            ("Vivo Y36", 0.08),
            ("Motorola Moto G54", 0.07),
            ("Realme C67", 0.06),
        ),
    ),
    "ios": (
        0.29,
        (("18.1", 0.40), ("17.6", 0.35), ("16.7", 0.18), ("15.8", 0.07)),
        (
            ("iPhone 16 Pro", 0.12),
            ("iPhone 16", 0.12),
            ("iPhone 15", 0.18),
            ("iPhone 14", 0.18),
            ("iPhone 13", 0.16),
            ("iPhone 12", 0.12),
            ("iPhone SE", 0.07),
            ("iPhone 11", 0.05),
        ),
    ),
}
APP_VERSIONS: tuple[tuple[str, float], ...] = (
    ("6.4.0", 0.35),
    ("6.3.2", 0.25),
    ("6.3.1", 0.12),
    ("6.2.0", 0.10),
    ("6.1.5", 0.08),
    ("5.9.3", 0.06),
    ("5.8.0", 0.04),
)
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.18), ("IN", 0.14), ("BR", 0.08), ("ID", 0.07), ("GB", 0.05), ("DE", 0.05), ("MX", 0.05),
    ("FR", 0.04), ("JP", 0.04), ("TR", 0.03), ("NG", 0.03), ("PH", 0.03), ("VN", 0.03), ("ES", 0.03),
    ("IT", 0.03), ("CA", 0.03), ("KR", 0.02), ("PL", 0.02), ("EG", 0.02), ("AU", 0.02),
)  # fmt: skip
NETWORKS: tuple[tuple[str, float], ...] = (("wifi", 0.55), ("4g", 0.28), ("5g", 0.14), ("3g", 0.03))

# (os, os_version, model) combinations with their probability: one categorical "hardware" choice.
HARDWARE: tuple[tuple[str, str, str], ...]
_HARDWARE_P: np.ndarray


def _build_hardware() -> tuple[tuple[tuple[str, str, str], ...], np.ndarray]:
    combos, probs = [], []
    for os_name, (os_share, versions, models) in _OS.items():
        v_total = sum(w for _, w in versions)
        m_total = sum(w for _, w in models)
        for model, mw in models:
            for version, vw in versions:
                combos.append((os_name, version, model))
                probs.append(os_share * (mw / m_total) * (vw / v_total))
    p = np.array(probs)
    return tuple(combos), p / p.sum()


HARDWARE, _HARDWARE_P = _build_hardware()


def _cdf(weights: tuple[tuple[str, float], ...] | np.ndarray) -> np.ndarray:
    w = np.asarray([x for _, x in weights] if isinstance(weights, tuple) else weights, dtype=np.float64)
    return np.cumsum(w) / w.sum()


_CDF_HARDWARE = _cdf(_HARDWARE_P)
_CDF_APP = _cdf(APP_VERSIONS)
_CDF_COUNTRY = _cdf(COUNTRIES)
_CDF_NETWORK = _cdf(NETWORKS)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: np.ndarray, salt: int = 0) -> np.ndarray:
    """SplitMix64 finaliser over a uint64 array: a fast, well-mixed, deterministic 64-bit hash."""
    z = x.astype(np.uint64) + np.uint64((_GOLDEN * (salt + 1)) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _lookup(cdf: np.ndarray) -> np.ndarray:
    """16 hash bits -> catalogue index, as one table gather (the weighted choice, precomputed)."""
    u = np.arange(65536, dtype=np.float64) / 65536.0
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1).astype(np.int32)


_LUT_HARDWARE, _LUT_APP, _LUT_COUNTRY, _LUT_NETWORK = (
    _lookup(c) for c in (_CDF_HARDWARE, _CDF_APP, _CDF_COUNTRY, _CDF_NETWORK)
)
_MASK16 = np.uint64(0xFFFF)
# app_version x country x network: one "locale" index (560 combinations), next to the hardware index.
LOCALE_COUNT = len(APP_VERSIONS) * len(COUNTRIES) * len(NETWORKS)


def device_codes(user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(device_id hash, hardware index, locale index) per user: the whole device_info follows from them."""
    h = mix64(user_ids, salt=1)
    hardware = _LUT_HARDWARE[h & _MASK16]
    app = _LUT_APP[(h >> np.uint64(16)) & _MASK16]
    country = _LUT_COUNTRY[(h >> np.uint64(32)) & _MASK16]
    network = _LUT_NETWORK[h >> np.uint64(48)]
    locale = (app * len(COUNTRIES) + country) * len(NETWORKS) + network
    return mix64(user_ids, salt=2), hardware, locale


def device_fields(hardware: int, locale: int) -> dict[str, str]:
    """The device_info fields (all but device_id) of a hardware and a locale index."""
    rest, network = divmod(int(locale), len(NETWORKS))
    app, country = divmod(rest, len(COUNTRIES))
    os_name, os_version, model = HARDWARE[int(hardware)]
    return {
        "os": os_name,
        "os_version": os_version,
        "model": model,
        "app_version": APP_VERSIONS[app][0],
        "country": COUNTRIES[country][0],
        "network": NETWORKS[network][0],
    }


def device_info(user_id: int) -> dict[str, str]:
    """The full device_info object of one user (for tests and validation; the encoder is vectorised)."""
    dev, hardware, locale = device_codes(np.array([user_id], dtype=np.uint64))
    return {"device_id": f"{int(dev[0]):016x}", **device_fields(hardware[0], locale[0])}
