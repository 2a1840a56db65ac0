import roma, torch, numpy as np, time, starfile, mrcfile, sys
torch.set_num_threads(1)
from cryoai.train.warmstart import warm_start
from cryoai.geometry.grids import fft2_centered, freq_grid_2d
from cryoai.physics.ctf import ctf
from cryoai.geometry.rotations import euler_to_matrix
sys.path.insert(0,'/work/main/src')
d=sys.argv[1]; M=1500; b=16
st=starfile.read(d+'/particles.star'); df=st['particles'].iloc[:M]; op=st['optics'].iloc[0]
L=int(op.rlnImageSize); apix=float(op.rlnImagePixelSize)
imgs=torch.tensor(mrcfile.mmap(d+'/particles.mrcs').data[:M].copy())
spec=fft2_centered(imgs); s=L//2-b//2; spec=spec[:, s:s+b, s:s+b]/L
apix_b=apix*L/b
if 'rlnDefocusU' in df:
  p=torch.tensor(np.stack([df.rlnDefocusU, df.rlnDefocusV, df.rlnDefocusAngle, np.full(M,op.rlnVoltage), np.full(M,op.rlnSphericalAberration), np.full(M,op.rlnAmplitudeContrast), np.zeros(M), np.zeros(M)],1))
  c=ctf(freq_grid_2d(b).reshape(-1,2)/apix_b, p).reshape(M,b,b)
else: c=torch.ones(M,b,b)
t=time.time()
def err(P, T):
    best=None
    for J in [torch.eye(3), torch.diag(torch.tensor([1.,1.,-1.]))]:
        Pj=J@P@J
        # A' = A G^T => find G minimizing ||Pj - T G^T||: G^T = procrustes(sum T^T Pj)
        G=roma.special_procrustes((T.transpose(1,2)@Pj).sum(0))
        e=torch.rad2deg(roma.rotmat_geodesic_distance(Pj, T@G))
        if best is None or e.median()<best.median(): best=e
    return best
A=torch.tensor(euler_to_matrix(df.rlnAngleRot, df.rlnAngleTilt, df.rlnAnglePsi),dtype=torch.float32)
def cb(R,t): print('   err', err(R,A).median().item())
import os; res=warm_start(spec, c, b, callback=cb, max_shift_px=float(os.environ.get("MS","1")), seed=int(os.environ.get("SEED","0")))
print('time', time.time()-t)
A=torch.tensor(euler_to_matrix(df.rlnAngleRot, df.rlnAngleTilt, df.rlnAnglePsi),dtype=torch.float32)
e=err(res.rotations, A)
print('median err', e.median().item(), 'frac<10', (e<10).float().mean().item())
o=torch.tensor(np.stack([df.rlnOriginXAngst, df.rlnOriginYAngst],1))/apix_b
print('shift err px16', (res.origins_px-o).norm(dim=1).median().item(), o.norm(dim=1).median().item())
