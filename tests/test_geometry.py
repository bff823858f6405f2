"""Calorimeter geometries: descriptions round-trip, files carry them, and the shower modules size themselves by them."""

from dataclasses import asdict

import numpy as np
import pytest
import torch

from omnijet_lib.data.geometry import (
    AHCAL,
    ILD_ECAL,
    CalorimeterGeometry,
    cylindrical_geometry,
    geometry_by_name,
)
from omnijet_lib.data.hit_sequences import hit_sequences
from omnijet_lib.data.shower_files import read_showers, write_showers
from omnijet_lib.data.shower_preprocessing import ShowerPreprocessingConfig, preprocess_showers, showers_from_features
from omnijet_lib.data.showers import Showers, concatenate_showers
from omnijet_lib.errors import BadDataError
from omnijet_lib.generation.hits import generate_hits
from omnijet_lib.metrics.shower_quality import depth_profile
from omnijet_lib.models.spatial_gpt import SpatialGPT, SpatialGPTConfig
from omnijet_lib.shower_observables import centre_of_gravity, energy_sum, longitudinal_profile, radial_profile
from omnijet_lib.training import TrainingConfig
from omnijet_lib.training.spatial_gpt import fit_spatial_gpt

CALO_CHALLENGE_2 = cylindrical_geometry(
    "calochallenge_2",
    n_alpha=16,
    radial_edges_mm=[0, 4.65, 9.3, 13.95, 18.6, 27.9, 37.2, 46.5, 55.8, 65.1],
    n_layers=45,
)


def random_showers(geometry: CalorimeterGeometry, n: int = 5, hits: int = 40, seed: int = 0) -> Showers:
    """Showers of distinct random cells of ``geometry``, energies above its threshold."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, hits, 4), dtype=np.float32)
    for i in range(n):
        k = rng.integers(1, hits + 1)
        cells = rng.choice(geometry.n_cells, k, replace=False)
        out[i, :k, :3] = np.stack(np.unravel_index(cells, geometry.shape), axis=1)
        out[i, :k, 3] = rng.exponential(2.0, k) + 2 * geometry.hit_threshold_mev + 0.01
    return Showers(out, rng.uniform(10, 90, n).astype(np.float32), geometry)


@pytest.mark.parametrize("geometry", [ILD_ECAL, AHCAL, CALO_CHALLENGE_2], ids=lambda g: g.name)
def test_a_geometry_round_trips_through_its_description_and_a_shower_file(geometry, tmp_path):
    assert CalorimeterGeometry.from_dict(asdict(geometry)) == geometry
    assert CalorimeterGeometry.from_json(geometry.to_json()) == geometry
    showers = random_showers(geometry)
    for layout in ("reference", "caloclouds"):
        back = read_showers(write_showers(tmp_path / f"{layout}.h5", showers, layout=layout))
        assert back.geometry == geometry
        np.testing.assert_array_equal(back.hits, showers.hits)


def test_known_geometries_and_their_depths():
    assert geometry_by_name("ahcal") is AHCAL
    with pytest.raises(ValueError, match="unknown calorimeter geometry 'hcal'.*ahcal"):
        geometry_by_name("hcal")
    # the ECAL: 20 layers of 0.6 X0 and 10 of 1.2 X0, 24 X0 in all; the AHCAL: ~5.9 λ_I of steel
    np.testing.assert_allclose(ILD_ECAL.layer_x0[[0, 29]], [0.605, 1.204], atol=0.002)
    assert 23.5 < ILD_ECAL.layer_x0.sum() < 24.5
    assert 5.7 < AHCAL.layer_lambda.sum() < 6.1 and 54 < AHCAL.layer_x0.sum() < 56
    assert np.all(np.diff(AHCAL.layer_depth_lambda) > 0)
    assert 0.02 < AHCAL.mip_sampling_fraction[0] < 0.04  # 3 mm scintillator behind 20 mm steel


def test_bad_descriptions_and_mixed_geometries_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown geometry field"):
        CalorimeterGeometry.from_dict({**asdict(AHCAL), "colour": "red"})
    with pytest.raises(ValueError, match="absorber_mm has 3 entries for 48 layers"):
        CalorimeterGeometry.from_dict({**asdict(AHCAL), "absorber_mm": [20.0] * 3})
    with pytest.raises(ValueError, match="radial edges"):
        cylindrical_geometry("bad", n_alpha=4, radial_edges_mm=[1, 2, 3], n_layers=2)
    with pytest.raises(ValueError, match="different geometries"):
        concatenate_showers([random_showers(ILD_ECAL), random_showers(AHCAL)])
    ecal = random_showers(ILD_ECAL)
    ecal.hits[0, 0, 2] = 40.0  # a layer the ECAL does not have, the AHCAL does
    with pytest.raises(BadDataError, match="outside the 30 × 30 × 30 grid of geometry 'ild_ecal'"):
        write_showers(tmp_path / "e.h5", ecal)
    write_showers(tmp_path / "h.h5", Showers(ecal.hits, ecal.incident_energy, AHCAL))


def test_preprocessing_scales_any_grid_and_keeps_the_ecal_numbers():
    ecal = ShowerPreprocessingConfig()
    assert (ecal.x_shift, ecal.x_scale, ecal.z_shift, ecal.z_scale) == (14.5, 0.3, 15.5, 0.2)
    config = ShowerPreprocessingConfig(max_hits=40, geometry=AHCAL)
    assert ShowerPreprocessingConfig(**asdict(config)) == config  # as a tokenizer file stores it
    showers = random_showers(AHCAL)
    features, mask = preprocess_showers(showers, config)
    assert np.abs(features[mask][:, :2]).max() < 4.6 and np.abs(features[mask][:, 2]).max() < 3.1
    back = showers_from_features(features, mask, showers.incident_energy, config)
    assert back.geometry == AHCAL
    np.testing.assert_allclose(np.sort(back.energy, axis=1), np.sort(showers.energy, axis=1), rtol=1e-5)


def test_showers_are_preprocessed_only_for_their_own_geometry():
    with pytest.raises(ValueError, match="showers of geometry 'ahcal' given to a pre-processing made for 'ild_ecal'"):
        preprocess_showers(random_showers(AHCAL), ShowerPreprocessingConfig(max_hits=40))


def test_depth_profile_in_interaction_and_radiation_lengths():
    hcal = random_showers(AHCAL, n=4)
    profile = depth_profile(hcal)  # λ_I
    np.testing.assert_allclose(profile.weights.sum(), energy_sum(hcal).mean())  # mean energy, every hit above threshold
    layers = hcal.z[hcal.energy > hcal.threshold].astype(int)
    np.testing.assert_allclose(profile.values, AHCAL.layer_depth_lambda[layers])
    assert 0 < profile.values.min() and profile.values.max() < AHCAL.layer_lambda.sum() < 6.0  # 48 layers: ~5.9 λ_I
    in_x0 = depth_profile(hcal, unit="radiation_length")
    np.testing.assert_allclose(in_x0.values, AHCAL.layer_depth_x0[layers])
    assert in_x0.values.max() > 5 * profile.values.max()  # steel: X0 ≈ λ_I / 9.6
    with pytest.raises(ValueError, match="unit must be one of"):
        depth_profile(hcal, unit="layers")


def test_profile_plots_bin_the_geometry_s_layers():
    import matplotlib.pyplot as plt

    from omnijet_lib.metrics.shower_quality import shower_distributions
    from omnijet_lib.plotting import compare_depth_profiles, compare_observable

    hcal = random_showers(AHCAL, n=4)
    hcal.hits[0, 0, 2] = 47.0  # a hit in the last layer, beyond the ECAL's 30
    samples = {"a": shower_distributions(hcal), "b": shower_distributions(hcal)}
    fig = compare_observable(samples, "longitudinal_profile", geometry=AHCAL)
    assert fig.axes[0].get_xlim()[1] >= 47.5  # every layer binned
    plt.close(fig)
    ecal = random_showers(ILD_ECAL, n=4)
    fig = compare_observable({"a": shower_distributions(ecal)}, "longitudinal_profile")  # the default: the ECAL
    assert fig.axes[0].get_xlim()[1] < 35  # 30 layers and a margin
    plt.close(fig)
    fig = compare_depth_profiles({"a": hcal, "b": hcal})
    assert fig.axes[0].get_xlim()[1] >= AHCAL.layer_depth_lambda[-1]
    plt.close(fig)


def test_observables_on_the_geometry_s_grid():
    hcal = random_showers(AHCAL, n=3)
    assert longitudinal_profile(hcal).shape == (3, 48)
    np.testing.assert_allclose(radial_profile(hcal).sum(axis=1), energy_sum(hcal))  # default bins reach every tile
    # On a cylindrical grid positions are in mm: a shower in one angular bin at radial bin 2 (middle 11.6 mm)
    # and the opposite bin lies on the axis; one hit's distance is its bin's radius.
    hits = np.zeros((2, 2, 4), dtype=np.float32)
    hits[0] = [[0, 2, 3, 1.0], [8, 2, 3, 1.0]]  # α bins 0 and 8 of 16: opposite sides
    hits[1, 0] = [4, 2, 3, 1.0]
    showers = Showers(hits, np.ones(2, dtype=np.float32), CALO_CHALLENGE_2)
    cog = centre_of_gravity(showers)
    np.testing.assert_allclose([cog["x"][0], cog["y"][0]], [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(np.hypot(cog["x"][1], cog["y"][1]), (9.3 + 13.95) / 2)
    profile = radial_profile(showers)  # bins: the radial edges [mm]
    assert profile.shape == (2, 9) and profile[0, 2] == 2.0 and profile[1, 0] == 1.0


def test_the_direct_model_takes_its_vocabulary_from_the_geometry(tmp_path):
    tiny = {"embed_dim": 16, "n_heads": 2, "n_blocks": 1, "ffn_dim": 32, "n_components": 2, "max_hits": 40}
    per_axis = SpatialGPT(SpatialGPTConfig(geometry=AHCAL, **tiny))
    assert (per_axis.z_head.linear.out_features, per_axis.x_head.linear.out_features) == (49, 30)
    joint = SpatialGPT(SpatialGPTConfig(geometry=CALO_CHALLENGE_2, tokenization="joint", **tiny))
    assert joint.voxel_head.linear.out_features == 16 * 9 * 45 + 1
    assert SpatialGPTConfig.from_dict(asdict(joint.config)) == joint.config  # as a checkpoint stores it
    torch.manual_seed(0)
    for model in (per_axis, joint):
        hits = generate_hits(model.eval(), [20.0, 60.0], max_hits=40, generator=torch.Generator().manual_seed(0))
        assert hits.geometry == model.config.geometry
        assert (hits.voxels[hits.mask] < np.array(model.config.geometry.shape)).all()
    ecal_hits = hit_sequences(random_showers(ILD_ECAL), max_hits=40)
    with pytest.raises(ValueError, match="geometry 'ild_ecal', the model's is 'ahcal'"):
        fit_spatial_gpt(per_axis.config, ecal_hits, ecal_hits, TrainingConfig(epochs=1), tmp_path / "run")
