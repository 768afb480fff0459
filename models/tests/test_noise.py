"""Philox4x32-10 known answers (Random123) and the Box-Muller stream's documented values."""

import numpy as np

from vidmesh_tiny.noise import gaussian, latent_noise, philox4x32_10


def kat(ctr, key):
    return [int(v) for v in philox4x32_10(np.array([ctr], dtype=np.uint64), key)[0]]


def test_philox_known_answers():
    assert kat([0, 0, 0, 0], (0, 0)) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert kat([0xFFFFFFFF] * 4, (0xFFFFFFFF, 0xFFFFFFFF)) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert kat([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], (0xA4093822, 0x299F31D0)) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


def test_documented_first_normals():
    np.testing.assert_array_equal(gaussian(42, 4), np.array([-0.9701898, 0.19401896, -1.2356207, 1.9239267], np.float32))


def test_stream_is_prefix_stable_and_seed_dependent():
    a = gaussian(7, 1001)
    np.testing.assert_array_equal(a[:10], gaussian(7, 10))
    assert not np.array_equal(gaussian(8, 10), a[:10])
    assert latent_noise(2**64 - 1, (8, 4, 16, 16)).shape == (8, 4, 16, 16)


def test_distribution_is_standard_normal():
    x = gaussian(123, 200_000).astype(np.float64)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert abs((x**4).mean() - 3) < 0.05  # kurtosis of a normal
