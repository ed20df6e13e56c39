"""tokc.export.tokenizers.validate without a real export: each failure is its own error."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from tokc.export import tokenizers as tk  # noqa: E402


def one_node(path, op, inp="x", out="y", dtype=None):
    from onnx import TensorProto, helper

    t = TensorProto.FLOAT if dtype is None else dtype
    g = helper.make_graph([helper.make_node(op, [inp], [out])], "g",
                          [helper.make_tensor_value_info(inp, t, ["b", "n"])],
                          [helper.make_tensor_value_info(out, t, None)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def spec(module, x, inputs=("x",), outputs=("y",)):
    return tk.Graph("decoder", module, inputs, outputs, (("batch", "n"),), (("batch", "n"),),
                    (), (), (x,))


X = np.random.default_rng(0).random((2, 5), dtype=np.float32)


class Add(torch.nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v

    def forward(self, x):
        return x + self.v


def test_passes_and_reports_errors(tmp_path):
    out = tk.validate(one_node(tmp_path / "a.onnx", "Identity"), spec(torch.nn.Identity(), X))
    assert out["outputs"]["y"] == {"max_abs_err": 0.0, "max_rel_err": 0.0}
    assert out["validated_shapes"] == [[2, 5]]
    out = tk.validate(one_node(tmp_path / "b.onnx", "Identity"), spec(Add(1e-4), X))
    assert out["outputs"]["y"]["max_abs_err"] == pytest.approx(1e-4, rel=1e-2)


def test_each_failure_has_its_error(tmp_path):
    p = one_node(tmp_path / "a.onnx", "Identity")
    with pytest.raises(tk.NameMismatchError, match="expected"):
        tk.validate(p, spec(torch.nn.Identity(), X, outputs=("image",)))
    with pytest.raises(tk.ShapeMismatchError, match="shape"):
        tk.validate(p, spec(lambda x: x[:, :3], X))
    with pytest.raises(tk.ValueMismatchError, match="max abs error"):
        tk.validate(p, spec(Add(0.5), X))
    with pytest.raises(tk.ValueMismatchError):  # NaN never passes
        tk.validate(p, spec(Add(float("nan")), X))
    q = one_node(tmp_path / "i.onnx", "Identity", dtype=onnx.TensorProto.INT64)
    ints = np.arange(10, dtype=np.int64).reshape(2, 5)
    assert tk.validate(q, spec(torch.nn.Identity(), ints))["outputs"]["y"]["tokens_equal"]
    with pytest.raises(tk.TokenMismatchError, match="1 of 10 y differ"):
        tk.validate(q, spec(lambda x: x + (x == 3).long(), ints))
    assert issubclass(tk.TokenMismatchError, tk.TokenizerExportError)


def test_masked_decode_equals_prefix_decode():
    """The fixed-slot graph with num_tokens gives the k-token prefix decode (tiny random TiTok)."""
    from tokc.models import titok
    from tokc.models.vit import vit_size

    cfg = titok.TiTokConfig(
        image_size=(32, 32), encoder=vit_size("tiny_w32_l1_h2"), decoder=vit_size("tiny_w32_l2_h2"),
        num_latent_tokens=6, codebook_size=16,
        pixel_decoder=titok.PixelDecoderConfig(channel_mult=(1, 1, 2), hidden_channels=32,
                                               z_channels=32, codebook_size=8))
    torch.manual_seed(0)
    model = titok.TiTok(cfg).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    tokens = torch.randint(0, 16, (2, 1, 6))
    masked = titok.MaskedDecodeGraph(model).eval()
    with torch.no_grad():
        got = masked(tokens, torch.tensor([2, 6]))
        for i, k in enumerate((2, 6)):
            ref = model.decode(tokens[i : i + 1, :, :k])
            assert torch.allclose(got[i : i + 1], ref, atol=1e-5, rtol=0)
        other = masked(torch.cat([tokens[:, :, :2], torch.zeros_like(tokens[:, :, 2:])], 2),
                       torch.tensor([2, 2]))
        assert torch.allclose(other[0], got[0], atol=1e-5)  # slots past num_tokens are ignored
