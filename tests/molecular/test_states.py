"""CVs (Angle, RMSD) and states (ball State, Region) against hand computations and mdtraj; dict parsers."""

import math
import pickle
import re

import mdtraj
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tps_diffusion.molecular.states import (
    RMSD,
    Angle,
    Dihedral,
    Distance,
    Region,
    State,
    StateDefinition,
    cv_from_dict,
    state_from_dict,
)
from tps_diffusion.molecular.superpose import superposed_msd
from tps_diffusion.utils.systems_dir import systems_dir

ALDP_DIR = systems_dir() / "alanine_dipeptide"
PHI = ("resname ACE and name C", "resname ALA and name N", "resname ALA and name CA", "resname ALA and name C")
PSI = ("resname ALA and name N", "resname ALA and name CA", "resname ALA and name C", "resname NME and name N")
HEAVY = "not element H"


def _raises(exc, match, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` raises ``exc`` with a one-line message matching ``match``."""
    with pytest.raises(exc, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value), str(info.value)
    return info.value


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture(scope="module")
def c5():
    return mdtraj.load(str(ALDP_DIR / "C5_min.pdb"))


@pytest.fixture(scope="module")
def frames(c5):
    """C5, C7ax, C7eq minima and two noisy copies of C5 (5 frames, same topology)."""
    xyz = [c5.xyz[0]] + [mdtraj.load(str(ALDP_DIR / f"{n}_min.pdb")).xyz[0] for n in ("C7ax", "C7eq")]
    rng = np.random.default_rng(0)
    xyz += [c5.xyz[0] + rng.normal(scale=0.02, size=c5.xyz[0].shape) for _ in range(2)]
    return mdtraj.Trajectory(np.array(xyz, dtype=np.float32), c5.topology)


@pytest.fixture(scope="module")
def cvs(c5):
    return {"phi": Dihedral("phi", PHI, c5), "psi": Dihedral("psi", PSI, c5),
            "d": Distance("d", ("resname ACE and name CH3", "resname NME and name C"), c5),
            "theta": Angle("theta", ("resname ALA and name N", "resname ALA and name CA", "resname ALA and name C"),
                           c5)}


# ----- Angle


def test_angle_matches_numpy(frames, cvs):
    ang = cvs["theta"]
    i, j, k = ang.atom_indices(frames.topology)
    x = frames.xyz.astype(np.float64)
    u, v = x[:, i] - x[:, j], x[:, k] - x[:, j]
    ref = np.arccos((u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1))
    got = ang.compute(frames)
    assert got.shape == (frames.n_frames,) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert np.all((got >= 0) & (got <= np.pi))
    assert 1.7 < got[0] < 2.1  # tetrahedral-ish N-CA-C
    assert not ang.periodic and ang.units == "rad"
    assert ang.to_dict() == {"type": "Angle", "name": "theta", "atoms": list(ang.atoms)}
    _raises(ValueError, "needs 3 atom selections, got 2", Angle, "bad", ("name CA", "name CB"))


# ----- RMSD


def test_rmsd_zero_for_reference_and_equals_mdtraj(c5, frames):
    rmsd = RMSD("r", c5, selection=HEAVY, topology=c5)
    idx = c5.topology.select(HEAVY)
    np.testing.assert_array_equal(rmsd.atom_indices(c5), idx)
    assert not rmsd.periodic and rmsd.units == "nm"
    assert rmsd.compute(c5)[0] == pytest.approx(0.0, abs=1e-6)
    got = rmsd.compute(frames)
    ref = mdtraj.rmsd(frames, c5, 0, atom_indices=idx, ref_atom_indices=idx)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-5)
    assert got[0] == pytest.approx(0.0, abs=1e-6) and np.all(got[1:] > 0.01)
    # the same reference as a full-system array and as a structure file
    np.testing.assert_allclose(RMSD("a", c5.xyz[0], HEAVY).compute(frames), got, atol=1e-6)
    from_file = RMSD("f", ALDP_DIR / "C5_min.pdb", HEAVY)
    np.testing.assert_allclose(from_file.compute(frames), got, atol=1e-6)
    assert from_file.to_dict() == {"type": "RMSD", "name": "f", "selection": HEAVY,
                                   "reference": str(ALDP_DIR / "C5_min.pdb")}
    assert rmsd.to_dict()["reference"] == "array"


def test_rmsd_invariant_to_rigid_motion(c5, frames):
    rng = np.random.default_rng(1)
    rmsd = RMSD("r", c5, selection=HEAVY)
    x = frames.xyz.astype(np.float64)
    moved = np.stack([f @ _rotation(rng).T + rng.normal(scale=2.0, size=3) for f in x])
    np.testing.assert_allclose(rmsd.compute(mdtraj.Trajectory(moved.astype(np.float32), c5.topology)),
                               rmsd.compute(frames), atol=2e-6)
    # a rigidly moved copy of the reference has RMSD 0; a reflection is not a rigid motion
    assert np.sqrt(superposed_msd(moved[:1, :], x[0]))[0] == pytest.approx(0.0, abs=1e-6)
    assert np.sqrt(superposed_msd(x[:1] * np.array([-1.0, 1.0, 1.0]), x[0]))[0] > 0.01


def test_rmsd_selection_errors(c5):
    heavy_ref = c5.atom_slice(c5.topology.select(HEAVY))
    _raises(ValueError, r"matches 22 atoms in the trajectory but 10 in the reference; use a selection",
            RMSD, "r", heavy_ref, "all", c5)
    r = RMSD("r", heavy_ref, "all")  # checked lazily without a topology
    _raises(ValueError, "matches 22 atoms in the trajectory but 10", r.compute, c5)
    _raises(ValueError, "matched no atoms in the reference", RMSD, "r", c5, "name XYZ")
    _raises(ValueError, "matched no atoms in the trajectory topology", RMSD, "r", c5.xyz[0], "name XYZ", c5)
    _raises(ValueError, "invalid atom selection", RMSD, "r", c5, "name ==")
    _raises(ValueError, "non-empty mdtraj selection", RMSD, "r", c5, "")
    _raises(ValueError, "reference array has 10 atoms but the topology has 22", RMSD, "r", heavy_ref.xyz[0],
            "name CA", c5)
    _raises(FileNotFoundError, "reference structure file not found", RMSD, "r", ALDP_DIR / "nope.pdb")
    # same count, different atoms: N, CA in the trajectory, CA, N in the reference
    top = mdtraj.Topology()
    res = top.add_residue("ALA", top.add_chain())
    top.add_atom("CA", mdtraj.element.carbon, res)
    top.add_atom("N", mdtraj.element.nitrogen, res)
    swapped = mdtraj.Trajectory(np.zeros((1, 2, 3), np.float32), top)
    _raises(ValueError, "same order", RMSD, "r", swapped, "resname ALA and (name N or name CA)", c5)


def test_pickle_round_trip(c5, frames, cvs):
    rmsd = RMSD("r", ALDP_DIR / "C7ax_min.pdb", HEAVY, c5)
    region = Region("reg", [(rmsd, None, 0.1), (cvs["phi"], 2.5, -2.5), (cvs["d"], 0.2, None)])
    r2, g2 = pickle.loads(pickle.dumps(rmsd)), pickle.loads(pickle.dumps(region))
    np.testing.assert_array_equal(r2.compute(frames), rmsd.compute(frames))
    np.testing.assert_array_equal(g2.depth(frames), region.depth(frames))
    np.testing.assert_array_equal(g2.contains(frames), region.contains(frames))
    assert g2.to_dict() == region.to_dict()


# ----- Region


def test_region_one_and_two_sided(frames, cvs):
    d = cvs["d"]
    v = np.array([0.1, 0.2, 0.3, 0.4, 0.5])[:, None]
    lower = Region("far", [(d, 0.3, None)])
    upper = Region("near", [(d, None, 0.3)])
    both = Region("mid", [(d, 0.2, 0.4)])
    assert lower.contains_cv(v).tolist() == [False, False, True, True, True]
    assert upper.contains_cv(v).tolist() == [True, True, True, False, False]
    assert both.contains_cv(v).tolist() == [False, True, True, True, False]
    np.testing.assert_allclose(both.depth_cv(v), [2.0, 1.0, 0.0, 1.0, 2.0], atol=1e-12)
    dl = lower.depth_cv(v)
    assert dl[2] == 1.0 and np.all(np.diff(dl) < 0) and dl[0] == pytest.approx(1 + 0.2 / 0.3)
    du = upper.depth_cv(v)
    assert du[2] == 1.0 and np.all(np.diff(du) > 0) and du[4] == pytest.approx(1 + 0.2 / 0.3)
    # on a trajectory: same as from the CV values; an AND over bounds
    vals = lower.cv_values(frames)
    assert vals.shape == (frames.n_frames, 1)
    for s in (lower, upper, both):
        assert isinstance(s, StateDefinition) and s.cvs == (d,)
        np.testing.assert_array_equal(s.contains(frames), s.contains_cv(vals))
        np.testing.assert_array_equal(s.depth(frames), s.depth_cv(vals))
    dist = d.compute(frames)
    cut = float(np.median(dist))
    two = Region("two", [(d, cut, None), (cvs["phi"], -np.pi + 0.01, np.pi - 0.01)])
    phi = cvs["phi"].compute(frames)
    np.testing.assert_array_equal(two.contains(frames), (dist >= cut) & (np.abs(phi) <= np.pi - 0.01))
    assert two.cvs == (d, cvs["phi"])


def test_region_periodic_wraparound(cvs):
    phi = cvs["phi"]
    wrapped = Region("alpha_L_edge", [(phi, 2.5, -2.5)])
    v = np.array([np.pi, -np.pi, 2.6, -2.6, 2.5, -2.5, 2.4, -2.4, 0.0])[:, None]
    assert wrapped.contains_cv(v).tolist() == [True] * 6 + [False] * 3
    depth = wrapped.depth_cv(v)
    assert depth[0] == pytest.approx(0.0, abs=1e-12) and depth[1] == pytest.approx(0.0, abs=1e-12)
    assert wrapped.depth_cv([[-3.0]])[0] == pytest.approx((np.pi - 3.0) / (np.pi - 2.5))
    assert depth[-1] == pytest.approx(np.pi / (np.pi - 2.5))
    plain = Region("r", [(phi, -1.0, 1.0)])  # not wrapped
    assert plain.contains_cv(v).tolist() == [False] * 8 + [True]
    # degrees beyond 180 are the same angles: (200, 300) deg == (-160, -60) deg
    a = Region("a", [(phi, math.radians(200), math.radians(300))])
    b = Region("b", [(phi, math.radians(-160), math.radians(-60))])
    grid = np.linspace(-np.pi, np.pi, 721)[:, None]
    np.testing.assert_array_equal(a.contains_cv(grid), b.contains_cv(grid))
    # one-sided on a periodic CV: the arc up to +pi / from -pi
    up = Region("u", [(phi, 2.0, None)])
    down = Region("d", [(phi, None, -2.0)])
    assert up.contains_cv([[2.0], [np.pi], [-np.pi], [-3.0], [1.9]]).tolist() == [True, True, True, False, False]
    assert down.contains_cv([[-2.0], [-np.pi], [np.pi], [3.0], [-1.9]]).tolist() == [True, True, True, False, False]


def test_region_validation(cvs):
    phi, d = cvs["phi"], cvs["d"]
    _raises(ValueError, "state 'x': a region needs at least one", Region, "x", [])
    _raises(ValueError, "state 'x': bound on CV 'd' has neither lower nor upper", Region, "x", [(d, None, None)])
    _raises(ValueError, "upper bound of CV 'd' must be a finite number", Region, "x", [(d, 0.1, np.inf)])
    _raises(ValueError, "lower bound of CV 'd' must be a finite number", Region, "x", [(d, "0.1", None)])
    _raises(ValueError, r"lower 0.4 must be < upper 0.2 \(nm\); swap them", Region, "x", [(d, 0.4, 0.2)])
    _raises(ValueError, "must be < upper", Region, "x", [(d, 0.2, 0.2)])
    _raises(ValueError, "is too narrow; widen it", Region, "x", [(d, 0.0, 5e-324)])
    _raises(ValueError, "span no arc or a full turn", Region, "x", [(phi, -np.pi, np.pi)])
    _raises(ValueError, "span no arc or a full turn", Region, "x", [(phi, 1.0, 1.0)])
    _raises(ValueError, "span no arc or a full turn", Region, "x", [(phi, -4.0, 4.0)])
    _raises(ValueError, r"one-sided bound on a periodic CV must lie in \(-pi, pi\)", Region, "x", [(phi, -np.pi, None)])
    _raises(ValueError, "is bounded twice", Region, "x", [(d, 0.1, None), (d, None, 0.3)])
    _raises(ValueError, "must start with a CollectiveVariable", Region, "x", [("d", 0.1, None)])
    _raises(ValueError, r"bound 0 must be a \(cv, lower, upper\) triple", Region, "x", [(d, 0.1)])
    _raises(ValueError, "bounds must be a sequence", Region, "x", 3)
    _raises(ValueError, r"shape \(\.\.\., 1\)", Region("x", [(d, 0.1, None)]).contains_cv, [[0.1, 0.2]])


@st.composite
def _region_and_values(draw):
    periodic = draw(st.booleans())
    cv = Dihedral("phi", PHI) if periodic else Distance("d", (0, 1))
    finite = st.floats(-3.0, 3.0, allow_nan=False)
    kind = draw(st.sampled_from(["both", "lower", "upper"]))
    if periodic and kind != "both":
        side = draw(st.floats(-3.1, 3.1))
        lo, hi = (side, None) if kind == "lower" else (None, side)
    elif kind == "both":
        lo, hi = draw(finite), draw(finite)
        if not periodic:
            lo, hi = min(lo, hi), max(lo, hi)
        if lo == hi:
            hi = lo + 0.5
    else:
        lo, hi = (draw(finite), None) if kind == "lower" else (None, draw(finite))
    edges = [float(e) for x in (lo, hi) if x is not None for e in (x, np.nextafter(x, -9), np.nextafter(x, 9))]
    values = draw(st.lists(st.one_of(finite, st.sampled_from(edges)), min_size=1, max_size=20))
    return Region("h", [(cv, lo, hi)]), np.array(values)[:, None]


@settings(max_examples=200, deadline=None)
@given(_region_and_values())
def test_region_depth_le_1_iff_contains(case):
    region, v = case
    assert np.array_equal(region.depth_cv(v) <= 1.0, region.contains_cv(v))


# ----- ball State


def test_ball_depth_is_distance_over_radius(frames, cvs):
    ball = State("C5", (cvs["phi"], cvs["psi"]), np.deg2rad([-150.0, 160.0]), 0.6)
    assert isinstance(ball, StateDefinition)
    dist = ball.distance(frames)
    np.testing.assert_allclose(ball.depth(frames), dist / 0.6, rtol=1e-12)
    np.testing.assert_array_equal(ball.depth(frames) <= 1, ball.contains(frames))
    assert ball.contains(frames)[0] and not ball.contains(frames).all()
    assert ball.to_dict() == {"name": "C5", "kind": "ball", "cvs": ["phi", "psi"],
                              "centre": np.deg2rad([-150.0, 160.0]).tolist(), "radius": 0.6}
    # boundary, to the last bit: d = 4 just outside r = nextafter(4, 0), d = r inside
    r = float(np.nextafter(4.0, 0.0))
    edge = State("e", (Distance("d", (0, 1)),), [0.0], r)
    assert not edge.contains_cv([[4.0]])[0] and edge.depth_cv([[4.0]])[0] > 1.0
    assert edge.contains_cv([[r]])[0] and edge.depth_cv([[r]])[0] == 1.0


# ----- dict parsers


def test_cv_from_dict(c5, frames, tmp_path):
    phi = cv_from_dict({"type": "dihedral", "atoms": list(PHI)}, c5, name="phi")
    assert isinstance(phi, Dihedral) and phi.name == "phi" and phi.atoms == PHI
    ang = cv_from_dict({"type": "Angle", "name": "t", "atoms": [6, 8, 14]}, c5)
    assert isinstance(ang, Angle) and ang.atoms == (6, 8, 14)
    dist = cv_from_dict({"type": "distance", "atoms": ["resname ACE and name CH3", "resname NME and name C"]},
                        name="d")
    assert isinstance(dist, Distance)
    for cv in (phi, ang, dist):  # to_dict round trip
        again = cv_from_dict(cv.to_dict())
        assert type(again) is type(cv) and again.to_dict() == cv.to_dict()
    (tmp_path / "ref.pdb").write_bytes((ALDP_DIR / "C7ax_min.pdb").read_bytes())
    r = cv_from_dict({"type": "rmsd", "reference": "ref.pdb", "selection": HEAVY}, c5, tmp_path, name="r")
    assert isinstance(r, RMSD) and r.reference_path == str(tmp_path / "ref.pdb") and r.selection == HEAVY
    assert r.compute(frames)[1] == pytest.approx(0.0, abs=1e-6)
    assert cv_from_dict(r.to_dict()).to_dict() == r.to_dict()
    assert cv_from_dict({"type": "RMSD", "reference": str(tmp_path / "ref.pdb")}, name="ca").selection == "name CA"


def test_cv_from_dict_errors(c5, tmp_path):
    atoms = list(PHI)
    _raises(ValueError, "CV definition has no name", cv_from_dict, {"type": "dihedral", "atoms": atoms})
    _raises(ValueError, "'name' 'x' does not match the CV name 'phi'", cv_from_dict,
            {"type": "dihedral", "name": "x", "atoms": atoms}, name="phi")
    _raises(ValueError, "CV 'phi': missing 'type'; allowed types: angle, dihedral, distance, rmsd", cv_from_dict,
            {"atoms": atoms}, name="phi")
    _raises(ValueError, "unknown type 'torsion'; allowed types: angle, dihedral, distance, rmsd", cv_from_dict,
            {"type": "torsion", "atoms": atoms}, name="phi")
    _raises(ValueError, "unknown key\\(s\\) 'atom'; allowed: type, name, atoms", cv_from_dict,
            {"type": "dihedral", "atom": atoms}, name="phi")
    _raises(ValueError, "unknown key\\(s\\) 'atoms'; allowed: type, name, reference, selection", cv_from_dict,
            {"type": "rmsd", "reference": "x.pdb", "atoms": atoms}, name="r")
    _raises(ValueError, "'atoms' must be a list of 4 mdtraj selections", cv_from_dict,
            {"type": "dihedral", "atoms": "name CA"}, name="phi")
    _raises(ValueError, "'atoms' must be a list of 2 mdtraj selections", cv_from_dict,
            {"type": "distance", "atoms": [1.5, 2]}, name="d")
    _raises(ValueError, "needs 3 atom selections, got 2", cv_from_dict, {"type": "angle", "atoms": [1, 2]},
            name="t")
    _raises(ValueError, "matched 0 atoms", cv_from_dict, {"type": "angle", "atoms": ["name X", "name CA", "name C"]},
            c5, name="t")
    _raises(ValueError, "'reference' must be the path of a structure file", cv_from_dict,
            {"type": "rmsd", "reference": "array"}, name="r")
    _raises(ValueError, "'reference' must be the path of a structure file", cv_from_dict, {"type": "rmsd"}, name="r")
    _raises(ValueError, "'selection' must be an mdtraj selection string", cv_from_dict,
            {"type": "rmsd", "reference": str(ALDP_DIR / "C5_min.pdb"), "selection": 3}, name="r")
    _raises(FileNotFoundError, re.escape(str(tmp_path / "missing.pdb")), cv_from_dict,
            {"type": "rmsd", "reference": "missing.pdb"}, base_dir=tmp_path, name="r")
    _raises(ValueError, "expected a table/dict", cv_from_dict, ["dihedral"], name="phi")


def test_state_from_dict_ball(cvs, frames):
    ball = state_from_dict("C5", {"cvs": ["phi", "psi"], "centre_deg": [-150, 160], "radius_deg": 30}, cvs)
    ref = State("C5", (cvs["phi"], cvs["psi"]), np.deg2rad([-150.0, 160.0]), math.radians(30))
    assert isinstance(ball, State) and ball.cvs == ref.cvs
    np.testing.assert_allclose(ball.centre, ref.centre) and ball.radius == pytest.approx(ref.radius)
    rad = state_from_dict("C5", {"cvs": ["phi", "psi"], "centre": ref.centre.tolist(), "radius": ref.radius}, cvs)
    np.testing.assert_array_equal(rad.depth(frames), ref.depth(frames))
    again = state_from_dict("C5", ref.to_dict(), cvs)
    assert isinstance(again, State) and again.to_dict() == ref.to_dict()
    mixed = state_from_dict("m", {"kind": "ball", "cvs": ["phi", "d"], "centre": [0.0, 0.4], "radius": 0.2}, cvs)
    assert mixed.cvs == (cvs["phi"], cvs["d"])


def test_state_from_dict_region(cvs, frames):
    reg = state_from_dict("r", {"bounds": {"phi": {"min_deg": 150, "max_deg": -150}, "d": {"min": 0.3},
                                           "theta": {"max_deg": 120}}}, cvs)
    assert isinstance(reg, Region) and reg.cvs == (cvs["phi"], cvs["d"], cvs["theta"])
    assert [(lo, hi) for _, lo, hi in reg.bounds] == [(pytest.approx(math.radians(150)),
                                                       pytest.approx(math.radians(-150))),
                                                      (0.3, None), (None, pytest.approx(math.radians(120)))]
    assert reg.to_dict() == {"name": "r", "kind": "region", "bounds": [
        {"cv": "phi", "lower": reg.bounds[0][1], "upper": reg.bounds[0][2]},
        {"cv": "d", "lower": 0.3, "upper": None}, {"cv": "theta", "lower": None, "upper": reg.bounds[2][2]}]}
    again = state_from_dict("r", reg.to_dict(), cvs)
    assert isinstance(again, Region) and again.to_dict() == reg.to_dict()
    np.testing.assert_array_equal(again.depth(frames), reg.depth(frames))
    one = state_from_dict("o", {"kind": "region", "bounds": {"d": {"max": 0.5}}}, cvs)
    assert one.bounds == ((cvs["d"], None, 0.5),)


def test_state_from_dict_errors(cvs):
    ball = {"cvs": ["phi", "psi"], "centre": [0.0, 0.0], "radius": 0.5}
    cases = [
        ({"cvs": ["phi"], "centre": [0.0], "radius": 0.5, "bounds": {}}, "either centre/radius/cvs .* or bounds"),
        ({}, "define a ball \\(cvs, centre, centre_deg, radius, radius_deg\\) or a region \\(bounds\\)"),
        ({**ball, "kind": "sphere"}, "unknown kind 'sphere'; allowed: ball, region"),
        ({**ball, "center": [0, 0]}, "unknown key\\(s\\) 'center'; allowed: name, kind, cvs, centre"),
        ({**ball, "name": "other"}, "'name' 'other' does not match the state name"),
        ({**ball, "cvs": ["phi", "omega"]}, "unknown CV 'omega'; defined CVs: phi, psi, d, theta"),
        ({**ball, "cvs": "phi"}, "'cvs' must be a non-empty list of CV names"),
        ({**ball, "centre_deg": [0, 0]}, "give either 'centre' or 'centre_deg', not both"),
        ({"cvs": ["phi"], "centre": [0.0]}, "missing 'radius' \\(CV units\\) or 'radius_deg' \\(degrees\\)"),
        ({"cvs": ["phi", "d"], "centre_deg": [0, 0], "radius": 0.1}, "'centre_deg' \\(degrees\\) is only for angle "
         "CVs, not 'd' \\(nm\\); use 'centre' in CV units"),
        ({"cvs": ["d"], "centre": [0.3], "radius_deg": 5}, "'radius_deg' \\(degrees\\) is only for angle CVs"),
        ({"cvs": ["phi", "psi"], "centre": [0.0], "radius": 0.5}, "'centre' has 1 values for 2 CVs"),
        ({"cvs": ["phi"], "centre": ["a"], "radius": 0.5}, "'centre' must be a list of numbers"),
        ({"cvs": ["phi"], "centre": [0.0], "radius": True}, "'radius' must be a number"),
        ({"cvs": ["phi"], "centre": [0.0], "radius": -1.0}, "radius finite and > 0"),
        ({"bounds": {"omega": {"min": 0}}}, "unknown CV 'omega'; defined CVs: phi, psi, d, theta"),
        ({"bounds": {"d": {"min": 0.1, "maximum": 0.2}}}, "bounds of 'd': unknown key\\(s\\) 'maximum'; allowed: "
         "min, max, min_deg, max_deg"),
        ({"bounds": {"d": {"min_deg": 10}}}, "'min_deg' \\(degrees\\) is only for angle CVs, not 'd' \\(nm\\)"),
        ({"bounds": {"phi": {"min": 0.1, "min_deg": 10}}}, "give either 'min' or 'min_deg', not both"),
        ({"bounds": {"d": {"min": "0.1"}}}, "bounds of 'd': 'min' must be a number"),
        ({"bounds": {"d": {}}}, "bound on CV 'd' has neither lower nor upper"),
        ({"bounds": {"d": {"min": 0.5, "max": 0.2}}}, "lower 0.5 must be < upper 0.2"),
        ({"bounds": {"d": 0.5}}, "bounds of 'd' must be a table like \\{min = 0.1, max = 0.3\\}"),
        ({"bounds": {}}, "a region needs at least one"),
        ({"bounds": "d > 0.5"}, "'bounds' must be a table"),
        ({"bounds": [{"cv": "d", "low": 0.1}]}, "bound 0: unknown key\\(s\\) 'low'; allowed: cv, lower, upper"),
        ({"bounds": [0.1]}, "bound 0 must be a dict with 'cv', 'lower', 'upper'"),
        ({"kind": "region", "cvs": ["d"], "bounds": {"d": {"min": 0.1}}}, "unknown key\\(s\\) 'cvs'; allowed: "
         "name, kind, bounds"),
    ]
    for d, match in cases:
        err = _raises(ValueError, match, state_from_dict, "s", d, cvs)
        assert str(err).startswith("state 's'"), str(err)
    _raises(ValueError, "state 's': expected a table/dict", state_from_dict, "s", [1, 2], cvs)


def test_exports():
    import tps_diffusion.molecular as mol

    for name in ("Angle", "RMSD", "Region", "StateDefinition", "cv_from_dict", "state_from_dict", "State",
                 "Dihedral", "Distance"):
        assert name in mol.__all__ and getattr(mol, name) is not None
