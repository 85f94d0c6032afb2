//! IronClaw kernel sandbox: seccomp-bpf, Landlock and namespaces from grants.
