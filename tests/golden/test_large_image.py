"""A 6000x4000 photo-sized image compresses and decompresses in bounded memory (slow)."""

import json
import subprocess
import sys
import textwrap

import pytest
from peak_rss import PEAK_KIB

SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    import tokc
    from tokc.metrics.image import psnr
    rng = np.random.default_rng(0)
    h, w = 4000, 6000
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 60 * np.sin(xx / 300 + c) * np.cos(yy / 200) for c in range(3)], 2)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    t = time.perf_counter()
    data = tokc.compress(img, quality=50, backend=sys.argv[1])
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    out = tokc.decompress(data, backend=sys.argv[1])
    t_dec = time.perf_counter() - t
    rss = PEAK_KIB * 1024
    print(json.dumps({"bytes": len(data), "psnr": psnr(img, out), "rss": rss,
                      "encode_s": t_enc, "decode_s": t_dec, "shape": list(out.shape)}))
""").replace("PEAK_KIB", PEAK_KIB)


@pytest.mark.slow
def test_6000x4000_under_3_gib():
    out = subprocess.run([sys.executable, "-c", SCRIPT, "torch"], capture_output=True, check=True)
    res = json.loads(out.stdout.decode().strip().splitlines()[-1])
    print(res)
    assert res["shape"] == [4000, 6000, 3]
    assert res["rss"] < 3 * 2**30
    assert res["psnr"] > 25
