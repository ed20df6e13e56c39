"""Coverage-guided fuzzing of the .tokc readers and decoders with atheris (libFuzzer).

    python tests/fuzz/fuzz.py [--target all] [--seconds 600] [--seed 1] [--work .fuzz]
                              [libFuzzer flags, e.g. -jobs=2 -max_len=4096]

`make fuzz` runs it for 10 minutes (FUZZ_SECONDS=...). It builds the tiny test models of
tests/conftest.py into WORK/fixtures (once), writes a seed corpus of real files made by them
to WORK/seeds, keeps what libFuzzer finds in WORK/corpus (reused by the next run) and writes
a crashing, hanging (-timeout) or memory-hungry (-rss_limit_mb) input to WORK/crashes/. A
crash is a finding: copy the file to tests/fuzz/regressions/ (tests/fuzz/test_fuzz.py checks
that each one ends in a clean library error) and fix the decoder.

Without atheris (or with --mutator random) it runs a seeded random-mutation fuzzer over the same
targets instead (no coverage feedback). Targets: see tests/fuzz/harness.py.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

# the modules whose code atheris instruments (coverage feedback): every one a decoder runs
MODULES = ["tokc", "tokc.format", "tokc.compress.base", "tokc.compress.registry",
           "tokc.compress.entropy", "tokc.compress.latent", "tokc.compress.image",
           "tokc.compress.pixels", "tokc.compress.tiling", "tokc.compress.weights",
           "tokc.compress.intnet", "tokc.compress.audio", "tokc.compress.sound", "tokc.dsp",
           "tokc.compress.tokens", "tokc.compress.wavtokens"]


def _import_targets(instrument) -> None:
    import importlib

    with instrument():
        for name in MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", default="all", choices=["all", "container", "api", "codecs_direct"])
    ap.add_argument("--work", type=Path, default=Path(".fuzz"))
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutator", choices=["atheris", "random"], default="atheris")
    ap.add_argument("--image-weights", type=Path, help="tiny tokc-image-v1 weights (default: built)")
    ap.add_argument("--audio-weights", type=Path, help="tiny tokc-audio-v1 weights (default: built)")
    args, libfuzzer = ap.parse_known_args(argv[1:])

    atheris = None
    if args.mutator == "atheris":
        try:
            import atheris
        except ImportError:
            print("fuzz: atheris is not installed: seeded random mutation instead", file=sys.stderr)
    if atheris is not None:
        _import_targets(lambda: atheris.instrument_imports(include=["tokc"]))
    try:
        import torch

        torch.set_num_threads(1)  # tiny models; far faster on a busy machine
    except ImportError:
        pass

    if args.image_weights or args.audio_weights:
        fixtures = harness.fixtures_from(args.image_weights, args.audio_weights)
    else:
        fixtures = harness.build_fixtures(args.work / "fixtures")
    h = harness.Harness(fixtures, cache_codecs=True)
    seeds = harness.make_corpus(h, args.work / "seeds")
    for path in seeds:  # real files: each decodes (else the fuzzer starts from garbage)
        data = path.read_bytes()
        h.tokc.decompress(data, **h.options[h.fmt.read_header(data).codec])
    corpus = args.work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes = args.work / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    target = getattr(h, args.target)
    missing = [e.codec_id for e in h.registry.entries() if e.codec_id not in h.codecs]
    print(f"fuzz: target {args.target}, codecs {', '.join(h.codecs)}"
          + (f" (no fixture here for {', '.join(missing)})" if missing else "")
          + f", {len(seeds)} seed files, {args.seconds} s, seed {args.seed}",
          file=sys.stderr, flush=True)

    if atheris is None:
        sys.exit(random_fuzz(target, [p.read_bytes() for p in seeds], args.seconds, args.seed,
                             crashes))

    def one_input(data: bytes) -> None:
        target(data)

    atheris.Setup([argv[0], f"-seed={args.seed}", f"-max_total_time={args.seconds}",
                   "-timeout=30", "-rss_limit_mb=4096", "-max_len=8192", "-print_final_stats=1",
                   f"-artifact_prefix={crashes}/", *libfuzzer, str(corpus), str(args.work / "seeds")],
                  one_input)
    atheris.Fuzz()


# --- without atheris: seeded random mutation -------------------------------------------------


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """One to four random edits: bit flips, byte sets, inserts, deletes, copies within the
    input and splices with another seed."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[pos % len(b)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[pos % len(b)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3:
            del b[pos : pos + rng.randint(1, 16)]
        elif op == 4 and b:
            src = rng.randrange(len(b))
            b[pos:pos] = b[src : src + rng.randint(1, 32)]
        else:
            other = rng.choice(others)
            cut = rng.randrange(len(other) + 1)
            b = b[:pos] + bytearray(other[cut:])
    return bytes(b)


def random_fuzz(target, seeds: list[bytes], seconds: int, seed: int, crashes: Path) -> int:
    rng = random.Random(seed)
    runs, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        data = mutate(rng, rng.choice(seeds), seeds)
        runs += 1
        try:
            target(data)
        except Exception:
            path = crashes / f"crash-{hashlib.sha1(data).hexdigest()}"
            path.write_bytes(data)
            traceback.print_exc()
            print(f"fuzz: crash after {runs} runs, input written to {path}", file=sys.stderr)
            return 1
    print(f"fuzz: random mutation: {runs} runs in {time.monotonic() - t0:.0f} s, no crash",
          file=sys.stderr)
    print(f"stat::number_of_executed_units: {runs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main(sys.argv)
