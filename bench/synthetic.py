"""A synthetic infra.yml of D domains x M machines, for the benchmarks."""

from __future__ import annotations


def synthetic_infra(domains: int, machines: int, image: str = "images:debian/buster") -> str:
    out = ["project_name: bench", "global:", '  base_subnet: "10.100"', f'  default_os_image: "{image}"',
           "domains:"]
    for d in range(domains):
        out += [f"  d{d:03d}:", f'    description: "Domain {d}"', f"    subnet_id: {d}", "    machines:"]
        for m in range(machines):
            out += [f"      m{d:03d}-{m:02d}:", f'        description: "Machine {m} of domain {d}"',
                    f'        ip: "10.100.{d}.{m + 1}"', "        config:", '          limits.cpu: "2"',
                    "        roles: [base_system]"]
    return "\n".join(out) + "\n"
