import numpy as np
import pytest

from tokc.compress import intnet


def reference_conv(layer, x):
    """The same integer layer in exact int64 arithmetic, element by element."""
    c, h, w = x.shape
    p = np.pad(x.astype(np.int64), ((0, 0), (1, 1), (1, 1)))
    acc = np.zeros((layer.weight.shape[0], h, w), np.int64)
    for dy in range(3):
        for dx in range(3):
            acc += np.einsum("oc,chw->ohw", layer.weight[:, :, dy, dx].astype(np.int64),
                             p[:, dy : dy + h, dx : dx + w])
    acc += layer.bias[:, None, None]
    half = 1 << (layer.shift - 1)
    y = (acc + half) >> layer.shift  # floor division by 2**shift
    if layer.relu:
        y = np.maximum(y, 0)
    y = np.clip(y, -(2**intnet.ACT_BITS), 2**intnet.ACT_BITS)
    return intnet.depth_to_space(y) if layer.shuffle else y


def test_float64_path_is_exact_at_the_bounds():
    rng = np.random.default_rng(0)
    cin = 2**intnet.MAX_K_BITS // 9
    w = rng.integers(-(2**intnet.WEIGHT_BITS), 2**intnet.WEIGHT_BITS + 1, size=(8, cin, 3, 3))
    w[0] = 2**intnet.WEIGHT_BITS  # worst case: every product at its maximum
    layer = intnet.IntConv(w, rng.integers(-(2**40), 2**40, size=8), 13, False, False)
    x = rng.integers(-(2**intnet.ACT_BITS), 2**intnet.ACT_BITS + 1, size=(cin, 5, 6))
    x[:] = np.where(rng.random(x.shape) < 0.5, 2**intnet.ACT_BITS, x)
    got = intnet.run([layer], x)
    np.testing.assert_array_equal(got.astype(np.int64), reference_conv(layer, x))


def test_relu_shuffle_chain_matches_reference():
    rng = np.random.default_rng(1)
    layers = [
        intnet.IntConv(rng.integers(-300, 300, (16, 3, 3, 3)), rng.integers(-999, 999, 16), 6, True, True),
        intnet.IntConv(rng.integers(-300, 300, (5, 4, 3, 3)), rng.integers(-999, 999, 5), 9, False, False),
    ]
    x = rng.integers(-50, 50, (3, 7, 4))
    ref = x
    for layer in layers:
        ref = reference_conv(layer, ref)
    np.testing.assert_array_equal(intnet.run(layers, x).astype(np.int64), ref)


def test_depth_to_space_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.arange(2 * 4 * 3 * 5, dtype=np.float64).reshape(8, 3, 5)
    ref = torch.nn.functional.pixel_shuffle(torch.from_numpy(x)[None], 2)[0].numpy()
    np.testing.assert_array_equal(intnet.depth_to_space(x), ref)


def test_quantized_layers_follow_the_float_net():
    rng = np.random.default_rng(2)
    convs = [
        (rng.normal(0, 0.2, (16, 4, 3, 3)), rng.normal(0, 0.1, 16), True, True),
        (rng.normal(0, 0.2, (6, 4, 3, 3)), rng.normal(0, 0.1, 6), False, False),
    ]
    x = rng.integers(-3, 4, (4, 5, 5)).astype(np.float64)
    ref = x
    for w, b, relu, shuffle in convs:
        ref = np.einsum("ocyx,cyxhw->ohw", w, np.stack(
            [np.stack([np.pad(ref, ((0, 0), (1, 1), (1, 1)))[:, dy:dy + ref.shape[1], dx:dx + ref.shape[2]]
                       for dx in range(3)], 1) for dy in range(3)], 1)) + b[:, None, None]
        ref = np.maximum(ref, 0) if relu else ref
        ref = intnet.depth_to_space(ref) if shuffle else ref
    layers, fracs = intnet.quantize_layers(convs, [8.0, 8.0], 12)
    got = intnet.run(layers, x) / 2.0 ** fracs[-1]
    assert np.abs(got - ref).max() < 1e-2


@pytest.mark.parametrize("cin,cout", [(3, 4), (9, 2)])
def test_tap_sums_in_bands_equal_exact_integers(cin, cout):
    rng = np.random.default_rng(3)
    layer = intnet.IntConv(rng.integers(-99, 99, (cout, cin, 3, 3)), rng.integers(-99, 99, cout), 5, True, False)
    x = rng.integers(-50, 50, (cin, 13, 7)).astype(np.float64)
    w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    p = np.pad(x.astype(np.int64), ((0, 0), (1, 1), (1, 1)))
    want = sum(np.einsum("oc,chw->ohw", layer.weight[:, :, dy, dx], p[:, dy : dy + 13, dx : dx + 7])
               for dy in range(3) for dx in range(3)) + layer.bias[:, None, None]
    for block in (1 << 16, 15, 1):  # one pass, bands of 1-2 rows, a row at a time
        got = intnet._conv3x3(intnet.tap_matrices(w), b, x, block=block)
        np.testing.assert_array_equal(got.astype(np.int64), want)
