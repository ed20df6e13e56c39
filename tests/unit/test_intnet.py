import importlib.util
import json

import numpy as np
import pytest

from tokc.compress import intnet, intnet_ort
from tokc.compress.intnet_ort import Network


def reference_conv(layer, x):
    """The same integer layer in exact int64 arithmetic, element by element."""
    c, h, w = x.shape
    kh, kw = layer.weight.shape[2:]
    x = np.clip(x.astype(np.int64), -layer.in_clip, layer.in_clip)
    p = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    acc = np.zeros((layer.weight.shape[0], h, w), np.int64)
    for dy in range(kh):
        for dx in range(kw):
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
    return reference_depth_to_space(y, *layer.factor)


def reference_depth_to_space(y, rh, rw):
    """Element by element: input channel c*rh*rw + i*rw + j at (y, x) -> (c, y*rh + i, x*rw + j)."""
    n, h, w = y.shape
    out = np.empty((n // (rh * rw), h * rh, w * rw), y.dtype)
    for ch in range(n):
        c, i, j = ch // (rh * rw), ch // rw % rh, ch % rw
        out[c, i::rh, j::rw] = y[ch]
    return out


@pytest.mark.parametrize("kernel", [(3, 3), (1, 5)])
def test_float64_path_is_exact_at_the_bounds(kernel):
    rng = np.random.default_rng(0)
    cin = 2**intnet.MAX_K_BITS // (kernel[0] * kernel[1])
    w = rng.integers(-(2**intnet.WEIGHT_BITS), 2**intnet.WEIGHT_BITS + 1, size=(8, cin, *kernel))
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


@pytest.mark.parametrize("kernel", [(3, 3), (1, 3), (1, 5)])
def test_float32_path_is_exact_at_its_bound(kernel):
    """8-bit weights whose |sum| over one tap times the input clip is exactly 2**24: the worst
    partial sum float32 must hold. Taps are summed in float32 one group at a time."""
    rng = np.random.default_rng(4)
    cin, clip = 288, 255
    cy, cx = kernel[0] // 2, kernel[1] // 2
    w = rng.integers(-128, 129, size=(6, cin, *kernel))
    w[0] = 0
    w[0, :, cy, cx] = 2**24 // clip // cin  # output 0, centre tap: in_clip * l1 = 2**24 - small
    w[0, : 2**24 // clip - cin * (2**24 // clip // cin), cy, cx] += 1  # ... topped up to the bound
    layer = intnet.IntConv(w, rng.integers(-(2**30), 2**30, size=6), np.array([9, 10, 11, 0, -2, 12]),
                           True, False, in_clip=clip)
    assert layer.f32_taps >= 1 and layer.taps.dtype == np.float32
    assert clip * np.abs(w[0, :, cy, cx]).sum() <= 2**24
    x = np.full((cin, 5, 6), clip)
    x[:, ::2] = rng.integers(-2 * clip, 2 * clip, size=x[:, ::2].shape)  # clipped on the way in
    np.testing.assert_array_equal(intnet.run([layer], x).astype(np.int64), reference_conv(layer, x))


@pytest.mark.parametrize("kernel", [(3, 3), (1, 5)])
def test_wide_inputs_fall_back_to_float64(kernel):
    w = np.full((2, 64, *kernel), 2**14)
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


@pytest.mark.parametrize("cin,cout,kh,kw", [(3, 4, 3, 3), (9, 2, 3, 3), (3, 4, 1, 5), (2, 3, 5, 5), (3, 2, 5, 1)])
def test_tap_sums_in_bands_equal_exact_integers(cin, cout, kh, kw):
    rng = np.random.default_rng(3)
    layer = intnet.IntConv(rng.integers(-99, 99, (cout, cin, kh, kw)), rng.integers(-99, 99, cout), 5, True, False)
    x = rng.integers(-50, 50, (cin, 13, 7)).astype(np.float64)
    w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    p = np.pad(x.astype(np.int64), ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    want = sum(np.einsum("oc,chw->ohw", layer.weight[:, :, dy, dx], p[:, dy : dy + 13, dx : dx + 7])
               for dy in range(kh) for dx in range(kw)) + layer.bias[:, None, None]
    for block in (1 << 16, 15, 1):  # one pass, bands of 1-2 rows, a row at a time
        for group in (0, 1, 2):  # all taps at once, one at a time, in pairs
            got = intnet._conv(intnet.tap_matrices(w), b, x, block=block, group=group)
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


def hs_like_1d(rng):
    """The same for a 1-D signal (C, 1, T): 1x5 and 1x3 kernels, upsampled 2x then 4x in time."""
    return [
        intnet.IntConv(rng.integers(-128, 129, (8, 5, 1, 5)), rng.integers(-2000, 2000, 8), 5, True, (1, 2)),
        intnet.IntConv(rng.integers(-128, 129, (24, 4, 1, 3)), rng.integers(-2000, 2000, 24),
                       rng.integers(3, 9, 24), True, [1, 4], in_clip=255),
        intnet.IntConv(rng.integers(-128, 129, (6, 6, 1, 5)), rng.integers(-2000, 2000, 6),
                       np.array([-2, -1, 0, 1, 4, 7]), False, False, in_clip=255),
    ]


def input_for(layers, rng):
    return rng.integers(-40, 41, (5, 1 if layers[0].kernel[0] == 1 else 6, 7))


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


@pytest.mark.parametrize("kernel, cin", [((3, 3), 64), ((1, 3), 192)])  # 576 terms either way
@pytest.mark.parametrize("bias0, in_float32", [(32640, True), (2**23, False)])
def test_float32_graph_is_exact_at_its_bound(bias0, in_float32, kernel, cin):
    """Hidden layer at in_clip * l1_max == 2**24 - 32,896, inputs at the clip. Output 0's bias
    either fills the float32 bound exactly (255 * l1 + bias + the half 2**8 == 2**24: bias and
    rescaling in float32) or pushes the sum past 2**24 (bias and rescaling in float64)."""
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    clip, (kh, kw) = 255, kernel
    w = rng.integers(-20, 21, (4, cin, kh, kw))
    w[0] = 2**24 // clip // (kh * kw * cin)  # every product positive, sum right below 2**24
    identity = np.pad(np.ones((1, 1)), ((kh // 2, kh // 2), (kw // 2, kw // 2)))  # centre tap 1
    first = intnet.IntConv(np.eye(cin, dtype=np.int64)[:, :, None, None] * identity[None, None],
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


@pytest.mark.parametrize("build", [hs_like, hs_like_1d])
def test_large_input_falls_back_to_numpy_with_the_same_integers(build):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(2)
    layers = build(rng)
    layers[0] = intnet.IntConv(layers[0].weight, layers[0].bias, 5, True, layers[0].shuffle, in_clip=2**20)
    net = Network(layers, threads=1)
    x = input_for(layers, rng)
    x[0, 0, 0] = 2**20  # first layer past float32's exact range
    assert net.session is not None and not net.exact_in_float32(x)
    np.testing.assert_array_equal(net(x).astype(np.int64), chain(layers, x))


@pytest.mark.parametrize("build", [hs_like, hs_like_1d])
def test_no_session_when_a_hidden_layer_cannot_be_exact(build):
    rng = np.random.default_rng(3)
    layers = build(rng)
    layers[1] = intnet.IntConv(layers[1].weight * 100, layers[1].bias, 9, True, layers[1].shuffle, in_clip=2**12)
    assert Network(layers).session is None
    assert Network(build(rng), accelerate=False).session is None
    x = input_for(layers, rng)
    np.testing.assert_array_equal(Network(layers)(x).astype(np.int64), chain(layers, x))


def test_graph_is_valid_onnx():
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(intnet_ort.graph_bytes(hs_like(np.random.default_rng(4))))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 3 and ops.count("DepthToSpace") == 2
    assert model.opset_import[0].version == 13
    model = onnx.load_from_string(intnet_ort.graph_bytes(hs_like_1d(np.random.default_rng(4))))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 3 and ops.count("Transpose") == 2 and "DepthToSpace" not in ops


def test_varint_of_negative_int64():
    assert intnet_ort._varint(-1) == b"\xff" * 9 + b"\x01"
    assert intnet_ort._varint(300) == b"\xac\x02"


# --- any kernel shape, any depth-to-space factor ---


def random_net(rng, kernel, factor):
    """Two layers of one kernel shape, the first upsampling by `factor`, the second at 8 bits."""
    (kh, kw), (rh, rw) = kernel, factor
    return [
        intnet.IntConv(rng.integers(-300, 301, (3 * rh * rw, 4, kh, kw)), rng.integers(-999, 999, 3 * rh * rw),
                       rng.integers(2, 7, 3 * rh * rw), True, list(factor)),
        intnet.IntConv(rng.integers(-128, 129, (5, 3, kh, kw)), rng.integers(-999, 999, 5),
                       np.array([-1, 0, 3, 5, 8]), False, False, in_clip=255),
    ]


@pytest.mark.parametrize("factor", [(1, 1), (1, 2), (1, 4), (2, 2), (2, 1)])
@pytest.mark.parametrize("kernel", [(1, 3), (1, 5), (3, 3), (5, 5)])
def test_any_kernel_and_factor_match_the_integer_reference(kernel, factor):
    """numpy spec == int64 reference == ONNX Runtime graph, on 1-D (C, 1, T) and 2-D inputs."""
    rng = np.random.default_rng(5)
    layers = random_net(rng, kernel, factor)
    x = rng.integers(-60, 61, (4, 1 if kernel[0] == 1 else 5, 9))
    want = chain(layers, x)
    assert want.shape == (5, x.shape[1] * factor[0], 9 * factor[1])
    np.testing.assert_array_equal(intnet.run(layers, x).astype(np.int64), want)
    if importlib.util.find_spec("onnxruntime"):
        net = Network(layers, threads=1)
        assert net.session is not None and net.exact_in_float32(x)
        np.testing.assert_array_equal(net(x).astype(np.int64), want)


def test_depth_to_space_order_element_by_element():
    x = np.arange(2 * 3 * 4 * 2 * 5, dtype=np.float64).reshape(24, 2, 5)
    for factor in [(1, 2), (1, 4), (2, 2), (3, 2), (2, 3), (1, 1)]:
        np.testing.assert_array_equal(intnet.depth_to_space(x, factor), reference_depth_to_space(x, *factor))
    y = intnet.depth_to_space(np.arange(6.0).reshape(6, 1, 1), (1, 3))  # 1-D: (c*r + k, t) -> (c, t*r + k)
    np.testing.assert_array_equal(y, [[[0, 1, 2]], [[3, 4, 5]]])


def test_kernel_and_factor_checks():
    w = np.ones((4, 2, 3, 3), np.int64)
    with pytest.raises(ValueError, match="odd"):
        intnet.IntConv(np.ones((4, 2, 1, 2), np.int64), np.zeros(4, np.int64), 0, False, False)
    with pytest.raises(ValueError, match="odd"):  # 5*5*164 terms > 2**MAX_K_BITS
        intnet.IntConv(np.ones((4, 164, 5, 5), np.int64), np.zeros(4, np.int64), 0, False, False)
    intnet.IntConv(np.ones((4, 163, 5, 5), np.int64), np.zeros(4, np.int64), 0, False, False)
    with pytest.raises(ValueError, match="blocks"):
        intnet.IntConv(w, np.zeros(4, np.int64), 0, False, (1, 3))
    with pytest.raises(ValueError, match="positive"):
        intnet.parse_shuffle([0, 2])


def test_spec_round_trip_and_files_before_general_factors():
    rng = np.random.default_rng(6)
    w, b = rng.integers(-9, 9, (8, 2, 1, 3)), rng.integers(-9, 9, 8)
    assert intnet.parse_shuffle(True) == (2, 2) and intnet.parse_shuffle(False) == (1, 1)
    assert intnet.parse_shuffle(None) == (1, 1) and intnet.parse_shuffle([1, 4]) == (1, 4)
    for shuffle, stored in [(True, True), (False, False), ((2, 2), True), ((1, 1), False), ((1, 4), [1, 4]),
                            ([1, 2], [1, 2])]:
        layer = intnet.IntConv(w, b, np.arange(8), True, shuffle, in_clip=255)
        spec = layer.spec()
        assert spec == {"shift": list(range(8)), "relu": True, "shuffle": stored, "in_clip": 255}
        again = intnet.IntConv.from_spec(w, b, json.loads(json.dumps(spec)))
        assert again.factor == layer.factor and again.in_clip == 255 and again.relu
        np.testing.assert_array_equal(again.shifts, layer.shifts)
    old = intnet.IntConv.from_spec(w.astype(np.float32), b, {"shift": 3, "relu": False, "shuffle": True})
    assert old.factor == (2, 2) and old.in_clip == 2**intnet.ACT_BITS and old.weight.dtype == np.int64


@pytest.mark.parametrize("kernel, factor", [((1, 5), (1, 2)), ((1, 3), (1, 4)), ((3, 3), (2, 2)), ((5, 5), (1, 2))])
def test_torch_conv_and_pixel_shuffle_2d_equal_the_spec(kernel, factor):
    """A float torch conv with integer weights, the same rescaling and pixel_shuffle_2d give the
    integers of the spec: the channel order a torch model must use."""
    torch = pytest.importorskip("torch")
    from tokc.models.layers import pixel_shuffle_2d

    rng = np.random.default_rng(7)
    layer = random_net(rng, kernel, factor)[0]
    x = rng.integers(-60, 61, (4, 1 if kernel[0] == 1 else 5, 9))
    f64 = lambda a: torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    y = torch.nn.functional.conv2d(f64(x)[None], f64(layer.weight), f64(layer.bias),
                                   padding=(kernel[0] // 2, kernel[1] // 2))
    y = torch.relu(torch.floor(y * f64(layer.scales)[None] + 0.5))
    got = pixel_shuffle_2d(y, *factor)[0].numpy()
    np.testing.assert_array_equal(got, intnet.run([layer], x))


def test_pixel_shuffle_2d_is_torch_pixel_shuffle_for_square_blocks():
    torch = pytest.importorskip("torch")
    from tokc.models.layers import pixel_shuffle_2d

    x = torch.arange(2 * 18 * 3 * 4, dtype=torch.float32).reshape(2, 18, 3, 4)
    assert torch.equal(pixel_shuffle_2d(x, 3, 3), torch.nn.functional.pixel_shuffle(x, 3))
    for rh, rw in [(1, 2), (2, 3), (3, 1)]:
        want = np.stack([reference_depth_to_space(b.numpy(), rh, rw) for b in x])
        np.testing.assert_array_equal(pixel_shuffle_2d(x, rh, rw).numpy(), want)
