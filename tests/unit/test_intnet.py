import numpy as np
import pytest

from tokc.compress import intnet, intnet_ort
from tokc.compress.intnet_ort import Network


def reference_conv(layer, x):
    """The same integer layer in exact int64 arithmetic, element by element."""
    c, h, w = x.shape
    x = np.clip(x.astype(np.int64), -layer.in_clip, layer.in_clip)
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    acc = np.zeros((layer.weight.shape[0], h, w), np.int64)
    for dy in range(3):
        for dx in range(3):
            acc += np.einsum("oc,chw->ohw", layer.weight[:, :, dy, dx].astype(np.int64),
                             p[:, dy : dy + h, dx : dx + w])
    acc += layer.bias[:, None, None]
    shift = np.broadcast_to(np.asarray(layer.shift), (len(acc),))[:, None, None]
    right = np.maximum(shift, 0)
    half = np.where(shift > 0, 1 << np.maximum(shift - 1, 0), 0)
    y = np.where(shift > 0, (acc + half) >> right, acc << np.maximum(-shift, 0))  # floor(acc/2**s + 1/2)
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


def test_float32_path_is_exact_at_its_bound():
    """8-bit weights whose |sum| over one tap times the input clip is exactly 2**24: the worst
    partial sum float32 must hold. Taps are summed in float32 one group at a time."""
    rng = np.random.default_rng(4)
    cin, clip = 288, 255
    w = rng.integers(-128, 129, size=(6, cin, 3, 3))
    w[0] = 0
    w[0, :, 1, 1] = 2**24 // clip // cin  # output 0, centre tap: in_clip * l1 = 2**24 - small
    w[0, : 2**24 // clip - cin * (2**24 // clip // cin), 1, 1] += 1  # ... topped up to the bound
    layer = intnet.IntConv(w, rng.integers(-(2**30), 2**30, size=6), np.array([9, 10, 11, 0, -2, 12]),
                           True, False, in_clip=clip)
    assert layer.f32_taps >= 1 and layer.taps.dtype == np.float32
    assert clip * np.abs(w[0, :, 1, 1]).sum() <= 2**24
    x = np.full((cin, 5, 6), clip)
    x[:, ::2] = rng.integers(-2 * clip, 2 * clip, size=x[:, ::2].shape)  # clipped on the way in
    np.testing.assert_array_equal(intnet.run([layer], x).astype(np.int64), reference_conv(layer, x))


def test_wide_inputs_fall_back_to_float64():
    w = np.full((2, 64, 3, 3), 2**14)
    layer = intnet.IntConv(w, np.zeros(2, np.int64), 3, False, False, in_clip=2**20)
    assert layer.f32_taps == 0 and layer.taps.dtype == np.float64


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
    ref, outs = x, []
    for w, b, relu, shuffle in convs:
        ref = np.einsum("ocyx,cyxhw->ohw", w, np.stack(
            [np.stack([np.pad(ref, ((0, 0), (1, 1), (1, 1)))[:, dy:dy + ref.shape[1], dx:dx + ref.shape[2]]
                       for dx in range(3)], 1) for dy in range(3)], 1)) + b[:, None, None]
        ref = np.maximum(ref, 0) if relu else ref
        ref = intnet.depth_to_space(ref) if shuffle else ref
        outs.append(float(np.abs(ref).max()))
    layers, fracs = intnet.quantize_layers(convs, [8.0, 8.0], 12)
    got = intnet.run(layers, x) / 2.0 ** fracs[-1]
    assert np.abs(got - ref).max() < 1e-2
    # 8-bit weights and activations, run in float32: coarser, still close
    layers, fracs = intnet.quantize_layers(convs, outs, 12, weight_bits=7, act_bits=8, in_clip=7)
    assert all(layer.f32_taps for layer in layers)
    got = intnet.run(layers, x) / 2.0 ** fracs[-1]
    assert np.abs(got - ref).max() < 0.03 * np.abs(ref).max()  # measured 0.017


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


# --- intnet_ort: the same networks in ONNX Runtime ---


def chain(layers, x):
    for layer in layers:
        x = reference_conv(layer, x)
    return x


def hs_like(rng):
    """Three layers shaped like the hyper-synthesis: signed input, ReLU, two depth-to-space."""
    return [
        intnet.IntConv(rng.integers(-128, 129, (16, 5, 3, 3)), rng.integers(-2000, 2000, 16), 5, True, True),
        intnet.IntConv(rng.integers(-128, 129, (24, 4, 3, 3)), rng.integers(-2000, 2000, 24),
                       rng.integers(3, 9, 24), True, True, in_clip=255),
        intnet.IntConv(rng.integers(-128, 129, (6, 6, 3, 3)), rng.integers(-2000, 2000, 6),
                       np.array([-2, -1, 0, 1, 4, 7]), False, False, in_clip=255),
    ]


def test_network_matches_integer_reference_in_onnxruntime():
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    layers = hs_like(rng)
    net = Network(layers, threads=1)
    x = rng.integers(-40, 41, (5, 6, 7))
    assert net.session is not None and net.exact_in_float32(x)  # the ONNX Runtime path
    got = net(x)
    assert got.shape == (6, 24, 28) and got.dtype == np.float64
    np.testing.assert_array_equal(got.astype(np.int64), chain(layers, x))


@pytest.mark.parametrize("bias0, in_float32", [(32640, True), (2**23, False)])
def test_float32_graph_is_exact_at_its_bound(bias0, in_float32):
    """Hidden layer at in_clip * l1_max == 2**24 - 32,896, inputs at the clip. Output 0's bias
    either fills the float32 bound exactly (255 * l1 + bias + the half 2**8 == 2**24: bias and
    rescaling in float32) or pushes the sum past 2**24 (bias and rescaling in float64)."""
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    clip, cin = 255, 64
    w = rng.integers(-20, 21, (4, cin, 3, 3))
    w[0] = 2**24 // clip // (9 * cin)  # every product positive, sum right below 2**24
    first = intnet.IntConv(np.eye(cin, dtype=np.int64)[:, :, None, None] * np.pad(np.ones((1, 1)), 1)[None, None],
                           np.zeros(cin, np.int64), 0, True, False, in_clip=clip)
    second = intnet.IntConv(w, np.array([bias0, -5, 7, 0]), np.array([9, 3, -2, 0]), False, False, in_clip=clip)
    assert clip * second.l1_max + 32640 + 2**8 == intnet.F32_EXACT
    assert intnet_ort.float32_rescale_exact(second) == in_float32
    x = np.full((cin, 4, 5), clip)
    net = Network([first, second], threads=1)
    assert net.session is not None and net.exact_in_float32(x)
    got, want = net(x).astype(np.int64), chain([first, second], x)
    assert want[0, 1, 1] == (intnet.F32_EXACT + bias0 - 32640) >> 9  # the interior reaches the bound
    np.testing.assert_array_equal(got, want)


def test_large_input_falls_back_to_numpy_with_the_same_integers():
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(2)
    layers = hs_like(rng)
    layers[0] = intnet.IntConv(layers[0].weight, layers[0].bias, 5, True, True, in_clip=2**20)
    net = Network(layers, threads=1)
    x = rng.integers(-40, 41, (5, 6, 7))
    x[0, 0, 0] = 2**20  # first layer past float32's exact range
    assert net.session is not None and not net.exact_in_float32(x)
    np.testing.assert_array_equal(net(x).astype(np.int64), chain(layers, x))


def test_no_session_when_a_hidden_layer_cannot_be_exact():
    rng = np.random.default_rng(3)
    layers = hs_like(rng)
    layers[1] = intnet.IntConv(layers[1].weight * 100, layers[1].bias, 9, True, True, in_clip=2**12)
    assert Network(layers).session is None
    assert Network(hs_like(rng), accelerate=False).session is None
    x = rng.integers(-40, 41, (5, 6, 7))
    np.testing.assert_array_equal(Network(layers)(x).astype(np.int64), chain(layers, x))


def test_graph_is_valid_onnx():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(intnet_ort.graph_bytes(hs_like(np.random.default_rng(4))))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 3 and ops.count("DepthToSpace") == 2
    assert model.opset_import[0].version == 13


def test_varint_of_negative_int64():
    assert intnet_ort._varint(-1) == b"\xff" * 9 + b"\x01"
    assert intnet_ort._varint(300) == b"\xac\x02"
