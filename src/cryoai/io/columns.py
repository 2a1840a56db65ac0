"""The names of the CTF and pose columns in RELION STAR files and cryoSPARC ``.cs`` files, in one
place for the readers (``data.particles``) and the writers (``data.particle_export``).

The CTF maps are keyed by the fields of ``cryoai.physics.ctf.CTFParams`` (their units: Å,
degrees, kV, mm, fraction, Å²). cryoSPARC stores the two angles in radians (``CS_CTF_RADIANS``).
"""

from __future__ import annotations

# CTF field → RELION column (per particle, or in data_optics for voltage, Cs, amplitude contrast)
STAR_CTF = {
    "defocus_u_A": "rlnDefocusU",
    "defocus_v_A": "rlnDefocusV",
    "defocus_angle_deg": "rlnDefocusAngle",
    "voltage_kV": "rlnVoltage",
    "cs_mm": "rlnSphericalAberration",
    "amp_contrast": "rlnAmplitudeContrast",
    "phase_shift_deg": "rlnPhaseShift",
    "bfactor_A2": "rlnCtfBfactor",
}
STAR_OPTICS_CTF = ("voltage_kV", "cs_mm", "amp_contrast")  # the CTF fields an optics group holds

# CTF field → cryoSPARC field
CS_CTF = {
    "defocus_u_A": "ctf/df1_A",
    "defocus_v_A": "ctf/df2_A",
    "defocus_angle_deg": "ctf/df_angle_rad",
    "voltage_kV": "ctf/accel_kv",
    "cs_mm": "ctf/cs_mm",
    "amp_contrast": "ctf/amp_contrast",
    "phase_shift_deg": "ctf/phase_shift_rad",
    "bfactor_A2": "ctf/bfactor",
}
CS_CTF_RADIANS = ("defocus_angle_deg", "phase_shift_deg")  # in degrees here, radians in the .cs

# poses: RELION Euler angles (degrees), origins (Å; RELION 3.0: px); cryoSPARC axis-angle and shift (px)
STAR_ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
STAR_ORIGINS_A = ("rlnOriginXAngst", "rlnOriginYAngst")
STAR_ORIGINS_PX = ("rlnOriginX", "rlnOriginY")
CS_POSE = "alignments3D/pose"
CS_SHIFT = "alignments3D/shift"
CS_POSE_PSIZE = "alignments3D/psize_A"
