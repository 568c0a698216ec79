"""moto_server for the Terraform tests, with one fidelity fix.

Usage: python3 moto_server.py -H 127.0.0.1 -p PORT   (same flags as moto_server)

AWS detaches an instance's primary network interface when the instance terminates (an
interface created separately, like each Strata broker's fixed ENI, then becomes
"available" and can be deleted). moto 5 marks such an interface stopped but leaves it
attached to the terminated instance, so `terraform destroy` fails trying to detach
device index 0. This wrapper makes moto detach them on termination, as AWS does, and
is otherwise moto_server unchanged.
"""

import os
import sys

# Managed policies (AmazonSSMManagedInstanceCore) must exist for the role attachment.
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from moto.ec2.models.instances import Instance  # noqa: E402
from moto.server import main  # noqa: E402

_terminate = Instance.terminate


def _terminate_detaching_enis(self):  # type: ignore[no-untyped-def]
    kept = [nic for nic in self.nics.values() if not nic.delete_on_termination]
    state = _terminate(self)
    for nic in kept:
        if nic.instance is self:
            # Detach on the interface's side only: the terminated instance still
            # describes itself through its nics (private IP), as in AWS.
            nic.instance = None
            nic.attachment_id = None
            nic.attach_time = None
            nic.status = "available"
    return state


Instance.terminate = _terminate_detaching_enis

if __name__ == "__main__":
    main(sys.argv[1:])
