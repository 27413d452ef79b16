"""Write a few small test structures that the project makes itself (no network, no PDB).

Pseudo-atomic proteins (:mod:`cryo3d.synth.pseudo_atomic`) written as mmCIF atomic models
through gemmi (each pseudo-atom a carbon, nitrogen or oxygen atom of an ``ALA`` residue) and
as MRC density maps (their mass density at a given voxel size). ``cryo3d synth --structures DIR`` reads either kind.

    python scripts/make_test_structures.py OUT_DIR                # 3 models + 3 maps
    python scripts/make_test_structures.py OUT_DIR --kind cif --radii 40 60
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cryo3d.io.atomic import atomic_path
from cryo3d.io.tomogram import write_mrc
from cryo3d.synth import pseudo_atomic as pa
from cryo3d.synth.structures import atoms_to_map

#: Element of each pseudo-atom of a residue (C-alpha, peptide group, side chain) in the mmCIF file.
ELEMENTS = ("C", "N", "O")
NAMES = ("CA", "N", "CB")


def model_cif(xyz_zyx: np.ndarray, name: str) -> str:
    """An mmCIF text of pseudo-atoms ``[3N, 3]`` (``z, y, x`` Angstrom): residue ``i`` holds atoms
    ``i``, ``N + i`` and ``2N + i``."""
    import gemmi

    n = len(xyz_zyx) // 3
    st = gemmi.Structure()
    st.name = name
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    for i in range(n):
        res = gemmi.Residue()
        res.name = "ALA"
        res.seqid = gemmi.SeqId(i + 1, " ")
        for j in range(3):
            z, y, x = xyz_zyx[j * n + i]
            at = gemmi.Atom()
            at.name = NAMES[j]
            at.element = gemmi.Element(ELEMENTS[j])
            at.pos = gemmi.Position(float(x), float(y), float(z))
            at.occ = 1.0
            at.b_iso = 20.0
            res.add_atom(at)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st.make_mmcif_document().as_string()


def make(out: str | Path, radii=(40.0, 60.0, 80.0), kind: str = "both", spacing: float = 4.0,
         seed: int = 0, symmetries=(None, "C3", "D2")) -> list[Path]:
    """Write test structures into ``out``: ``prot<k>_r<radius>.cif`` and/or ``.mrc``.

    Args:
        out: folder (made if missing).
        radii: radii (Angstrom) of the proteins, one structure each.
        kind: ``cif``, ``mrc`` or ``both``.
        spacing: voxel size (Angstrom) of the maps.
        seed: random seed (the structures are deterministic for it).
        symmetries: point group (or None) per structure, cycled.

    Returns:
        The files written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for k, r in enumerate(radii):
        rng = np.random.default_rng([seed, k])
        xyz, mass = pa.protein(float(r), rng, symmetry=symmetries[k % len(symmetries)])
        stem = f"prot{k}_r{int(round(r))}"
        if kind in ("cif", "both"):
            p = out / f"{stem}.cif"
            with atomic_path(p) as tmp:
                Path(tmp).write_text(model_cif(xyz, stem))
            written.append(p)
        if kind in ("mrc", "both"):
            vol, _ = atoms_to_map(xyz, mass, spacing, sigma=1.5 * spacing)
            p = out / f"{stem}_map.mrc"
            write_mrc(p, vol, spacing)
            written.append(p)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output folder")
    ap.add_argument("--radii", type=float, nargs="+", default=[40.0, 60.0, 80.0], help="radii in Angstrom")
    ap.add_argument("--kind", choices=["cif", "mrc", "both"], default="both")
    ap.add_argument("--spacing", type=float, default=4.0, help="voxel size of the maps (Angstrom)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for p in make(a.out, a.radii, a.kind, a.spacing, a.seed):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
