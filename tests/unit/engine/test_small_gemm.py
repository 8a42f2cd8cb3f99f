"""The small-row GEMM kernel (engine/kernels/small_gemm.c, engine/small_gemm.py): same products as torch within fp32
rounding for every row count, ragged widths and strided inputs; a row's result independent of
the other rows in the call; torch used for what the kernel does not take; and a machine without
a working compiler falls back to torch instead of failing."""

import os
import subprocess
import sys

import pytest
import torch

from rollspec.engine import cpu_kernels, small_gemm

needs_kernel = pytest.mark.skipif(not cpu_kernels.enabled(), reason="small_gemm kernel does not load here")


@pytest.fixture
def kernel_on():
    cpu_kernels.set_enabled(True)
    yield
    cpu_kernels.set_enabled(True)


@needs_kernel
@pytest.mark.parametrize("K, N", [(192, 1152), (64, 63), (576, 192), (7, 33), (192, 16)])
def test_products_match_torch_for_every_row_count(kernel_on, K, N):
    generator = torch.Generator().manual_seed(K * 1000 + N)
    w_KN = torch.randn(K, N, generator=generator)
    weight = small_gemm.proj_weight(w_KN)
    assert weight.packed is not None
    for M in [0, 1, 2, 5, 9, 12, 13, 16, 21, 40]:
        x_MK = torch.randn(M, K, generator=generator)
        c_MN = torch.randn(M, N, generator=generator)
        torch.testing.assert_close(weight.mm(x_MK), x_MK @ w_KN, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(weight.addmm(c_MN, x_MK), c_MN + x_MK @ w_KN, rtol=1e-5, atol=1e-4)


@needs_kernel
def test_strided_rows_are_read_with_their_stride(kernel_on):
    generator = torch.Generator().manual_seed(1)
    w_KN = torch.randn(48, 40, generator=generator)
    wide = torch.randn(9, 100, generator=generator)
    x_MK = wide[:, 10:58]  # rows 100 floats apart, unit column stride
    residual = torch.randn(9, 70, generator=generator)[:, 5:45]
    weight = small_gemm.proj_weight(w_KN)
    torch.testing.assert_close(weight.mm(x_MK), x_MK @ w_KN, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(weight.addmm(residual, x_MK), residual + x_MK @ w_KN, rtol=1e-5, atol=1e-4)
    # a transposed input (column stride != 1) goes through torch, still right
    torch.testing.assert_close(weight.mm(torch.randn(48, 9).t()).shape, torch.Size([9, 40]))


@needs_kernel
def test_a_row_does_not_depend_on_the_rows_beside_it(kernel_on):
    generator = torch.Generator().manual_seed(2)
    weight = small_gemm.proj_weight(torch.randn(192, 1152, generator=generator))
    x_MK = torch.randn(16, 192, generator=generator)
    together = weight.mm(x_MK)
    for m in range(16):
        assert torch.equal(weight.mm(x_MK[m:m + 1]), together[m:m + 1])


def test_what_the_kernel_does_not_take_goes_through_torch(kernel_on):
    generator = torch.Generator().manual_seed(4)
    w64 = torch.randn(24, 40, generator=generator, dtype=torch.float64)
    weight64 = small_gemm.proj_weight(w64)
    assert weight64.packed is None  # fp32 only
    x64 = torch.randn(3, 24, generator=generator, dtype=torch.float64)
    assert torch.equal(weight64.mm(x64), torch.mm(x64, w64))
    w_KN = torch.randn(24, 40, generator=generator)
    x_MK = torch.randn(3, 24, generator=generator)
    cpu_kernels.set_enabled(False)
    assert torch.equal(small_gemm.proj_weight(w_KN).mm(x_MK), torch.mm(x_MK, w_KN))


def test_no_compiler_means_torch_not_a_failure(tmp_path):
    code = ("import torch; from rollspec.engine import cpu_kernels as k, small_gemm as s; w = torch.randn(8, 40);"
            "x = torch.randn(3, 8); p = s.proj_weight(w); print(k.enabled(), p.packed is None, torch.equal(p.mm(x), x @ w))")
    env = dict(os.environ, CC=str(tmp_path / "no-such-compiler"), ROLLSPEC_KERNEL_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True"]


@needs_kernel
def test_inputs_that_need_gradients_go_through_torch(kernel_on):
    w_KN = torch.randn(8, 40)
    x_MK = torch.randn(3, 8, requires_grad=True)
    out = small_gemm.proj_weight(w_KN).mm(x_MK)
    out.sum().backward()
    torch.testing.assert_close(x_MK.grad, w_KN.sum(1).expand(3, 8))
