"""Every sign, unit, index base and axis decision in one place (see ``shared/CONVENTIONS.md``).

- Rotations: RELION ZYZ Euler angles (degrees) and its matrix A (``geometry/rotations.py``).
  The image of a particle with pose A is P(x, y) = ∫ V(Aᵀ·[x, y, z]) dz; by the Fourier-slice
  theorem its transform is V̂ at Aᵀ·[kx, ky, 0], i.e. the row vector [kx, ky, 0] @ A.
- Arrays: maps are indexed (z, y, x), images (y, x); coordinates are written (x, y, z).
- Centre: pixel/voxel L//2 (0-based) is the origin, for even and odd L (RELION, ChimeraX).
- Fourier grids: centred (DC at index L//2 after fftshift), frequency index f = i − L//2,
  so an even box has −L/2 … L/2−1. In "cycles per pixel" k = f/L (Nyquist 0.5); in 1/Å, k/apix.
- Shifts: the particle centre sits at (image centre − origin); shifting the image by +origin
  centres it. A real-space shift by d multiplies the transform by exp(−2πi k·d).
- CTF: RELION's sign, +w at s = 0 (``physics/ctf.py``); RELION-extracted particles show the
  molecule bright and a correct reconstruction has positive density.
- STAR image indices are 1-based (``3@stack.mrcs``); cryoSPARC ``blob/idx`` is 0-based.
- cryoSPARC poses: A = expmap(alignments3D/pose)ᵀ; alignments3D/shift is RELION's origin in px.
- Hand: the mirror V'(x, y, z) = V(x, y, −z) has poses J·A·J with J = diag(1, 1, −1).
- Point groups: RELION's names and orientations (Cn about z, Dn with a two-fold on x, T, O,
  I = I2, I1…I4; ``geometry/symmetry.py``, checked against ``relion_refine --print_symmetry_ops``).
  A map with V(S·u) = V(u) gives the same image at poses A and A·Sᵀ; reported poses are the
  equivalent in RELION's asymmetric unit (Cn: rot in [0, 360°/n); Dn: and tilt ≤ 90°).
"""
