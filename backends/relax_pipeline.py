"""The Relax-to-VM lowering every llmc backend runs after it has scheduled its kernels.

TVM's default pipelines also legalize and fuse; llmc does both itself (its own lowering and
fusion pass), so backends share this finalization only, plus target-specific extras.
"""
from __future__ import annotations

import tvm
from tvm import relax


def vm_lowering(*extra: tvm.transform.Pass) -> tvm.transform.Pass:
    """Relax -> VM bytecode passes, followed by ``extra`` (e.g. x86's noalias marking)."""
    t = relax.transform
    return tvm.transform.Sequential([
        t.RewriteDataflowReshape(), t.ToNonDataflow(), t.RemovePurityChecking(),
        t.CallTIRRewrite(), t.StaticPlanBlockMemory(), t.LowerAllocTensor(),
        t.KillAfterLastUse(), t.LowerRuntimeBuiltin(), t.ComputePrimValue(),
        t.VMShapeLower(), t.AttachGlobalSymbol(), *extra,
    ])
