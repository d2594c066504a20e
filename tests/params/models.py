"""Flax models and their torch twins with the same dotted names (torch ``weight`` -> flax ``kernel``
for convs and linears, ``scale`` for norms): a small ResNet-like (BatchNorm, depth-wise convs, a
downsample, a stand-in deformable conv with a ``conv_offset`` child) and a small ViT-like
transformer (LayerNorm, root-level ``pos_embed`` / ``cls_token``)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import torch

WIDTHS = (8, 16)
DIM, DEPTH = 16, 2


class FlaxBlock(nn.Module):
    features: int
    downsample: bool

    @nn.compact
    def __call__(self, x):
        y = nn.BatchNorm(use_running_average=True, name="bn1")(
            nn.Conv(self.features, (3, 3), use_bias=False, name="conv1")(x)
        )
        y = nn.BatchNorm(use_running_average=True, name="bn2")(
            nn.Conv(self.features, (3, 3), feature_group_count=self.features, name="dw")(y)
        )
        y = nn.Conv(self.features, (1, 1), name="conv2")(y)
        if self.downsample:
            x = FlaxDownsample(self.features, name="downsample")(x)
        return nn.relu(x + y)


class FlaxDownsample(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        return nn.BatchNorm(use_running_average=True, name="1")(
            nn.Conv(self.features, (1, 1), use_bias=False, name="0")(x)
        )


class FlaxDeformStandIn(nn.Module):
    """A deformable conv's parameters (its own kernel and bias, a ``conv_offset`` conv child)."""

    features: int

    @nn.compact
    def __call__(self, x):
        offset = nn.Conv(18, (3, 3), name="conv_offset")(x)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        out = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return out + bias + jnp.tanh(offset).mean()


class FlaxResNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=True, name="bn1")(
            nn.Conv(WIDTHS[0], (3, 3), use_bias=False, name="conv1")(x)
        )
        for i, width in enumerate(WIDTHS):
            x = FlaxStage(width, i > 0, name=f"layer{i + 1}")(x)
        x = FlaxNeck(WIDTHS[-1], name="neck")(x)
        return nn.Dense(10, name="fc")(x.mean((1, 2)))


class FlaxStage(nn.Module):
    features: int
    downsample: bool

    @nn.compact
    def __call__(self, x):
        x = FlaxBlock(self.features, self.downsample, name="0")(x)
        return FlaxBlock(self.features, False, name="1")(x)


class FlaxNeck(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        x = FlaxDeformStandIn(self.features, name="dcn")(x)
        return nn.GroupNorm(4, name="gn")(x)


class TorchDeformStandIn(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(cout, cin, 3, 3))
        self.bias = torch.nn.Parameter(torch.zeros(cout))
        self.conv_offset = torch.nn.Conv2d(cin, 18, 3)


def torch_block(cin, cout, downsample):
    block = torch.nn.Module()
    block.conv1 = torch.nn.Conv2d(cin, cout, 3, bias=False)
    block.bn1 = torch.nn.BatchNorm2d(cout)
    block.dw = torch.nn.Conv2d(cout, cout, 3, groups=cout)
    block.bn2 = torch.nn.BatchNorm2d(cout)
    block.conv2 = torch.nn.Conv2d(cout, cout, 1)
    if downsample:
        block.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, bias=False), torch.nn.BatchNorm2d(cout))
    return block


def torch_resnet():
    model = torch.nn.Module()
    model.conv1 = torch.nn.Conv2d(3, WIDTHS[0], 3, bias=False)
    model.bn1 = torch.nn.BatchNorm2d(WIDTHS[0])
    cin = WIDTHS[0]
    for i, width in enumerate(WIDTHS):
        setattr(
            model,
            f"layer{i + 1}",
            torch.nn.Sequential(torch_block(cin, width, i > 0), torch_block(width, width, False)),
        )
        cin = width
    model.neck = torch.nn.Module()
    model.neck.dcn = TorchDeformStandIn(cin, cin)
    model.neck.gn = torch.nn.GroupNorm(4, cin)
    model.fc = torch.nn.Linear(cin, 10)
    return model


class FlaxViT(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(DIM, name="embed")(x)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, DIM))
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, DIM)), x], 1)
        x = x + self.param("pos_embed", nn.initializers.zeros, (1, x.shape[1], DIM))
        x = FlaxBlocks(name="blocks")(x)
        return nn.Dense(10, name="head")(nn.LayerNorm(name="norm")(x)[:, 0])


class FlaxBlocks(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(DEPTH):
            x = FlaxViTBlock(name=str(i))(x)
        return x


class FlaxViTBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = x + FlaxMlp(3 * DIM, ("qkv", "proj"), name="attn")(nn.LayerNorm(name="norm1")(x))
        return x + FlaxMlp(2 * DIM, ("fc1", "fc2"), name="mlp")(nn.LayerNorm(name="norm2")(x))


class FlaxMlp(nn.Module):
    hidden: int
    names: tuple

    @nn.compact
    def __call__(self, x):
        hidden = nn.gelu(nn.Dense(self.hidden, name=self.names[0])(x))
        return nn.Dense(DIM, name=self.names[1])(hidden)


def torch_vit(patches=4, patch_dim=12):
    model = torch.nn.Module()
    model.embed = torch.nn.Linear(patch_dim, DIM)
    model.cls_token = torch.nn.Parameter(torch.zeros(1, 1, DIM))
    model.pos_embed = torch.nn.Parameter(torch.zeros(1, patches + 1, DIM))
    model.blocks = torch.nn.Sequential()
    for _ in range(DEPTH):
        block = torch.nn.Module()
        block.norm1 = torch.nn.LayerNorm(DIM)
        block.attn = torch.nn.Module()
        block.attn.qkv, block.attn.proj = torch.nn.Linear(DIM, 3 * DIM), torch.nn.Linear(3 * DIM, DIM)
        block.norm2 = torch.nn.LayerNorm(DIM)
        block.mlp = torch.nn.Module()
        block.mlp.fc1, block.mlp.fc2 = torch.nn.Linear(DIM, 2 * DIM), torch.nn.Linear(2 * DIM, DIM)
        model.blocks.append(block)
    model.norm = torch.nn.LayerNorm(DIM)
    model.head = torch.nn.Linear(DIM, 10)
    return model


def flax_name(model, torch_name):
    """The flax twin's name of a torch parameter: ``weight`` -> ``scale`` in norms, else ``kernel``."""
    module_name, _, leaf = torch_name.rpartition(".")
    if leaf != "weight":
        return torch_name
    module = model.get_submodule(module_name)
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
    return f"{module_name}.{'scale' if isinstance(module, norms) else 'kernel'}"
