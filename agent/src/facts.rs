//! Host facts sent in every Hello: hostname, OS, kernel, architecture, addresses, boot time.

use std::net::IpAddr;

/// What the agent tells the collector about its host on connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub arch: String,
    pub ip_addresses: Vec<IpAddr>,
    /// Unix seconds.
    pub boot_time: i64,
}

/// Reads the facts from the running system. Missing values are empty strings rather than
/// errors: a host that hides its kernel version still reports its findings.
pub fn collect() -> HostFacts {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let mut ip_addresses: Vec<IpAddr> = networks
        .values()
        .flat_map(|data| data.ip_networks().iter().map(|net| net.addr))
        .filter(|addr| !addr.is_loopback() && !addr.is_unspecified())
        .collect();
    ip_addresses.sort();
    ip_addresses.dedup();
    HostFacts {
        hostname: sysinfo::System::host_name().unwrap_or_default(),
        os_name: sysinfo::System::name().unwrap_or_default(),
        os_version: sysinfo::System::long_os_version()
            .or_else(sysinfo::System::os_version)
            .unwrap_or_default(),
        kernel_version: sysinfo::System::kernel_version().unwrap_or_default(),
        arch: sysinfo::System::cpu_arch(),
        ip_addresses,
        boot_time: sysinfo::System::boot_time() as i64,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn collects_this_host() {
        let facts = super::collect();
        assert!(!facts.hostname.is_empty());
        assert!(!facts.arch.is_empty());
        assert!(facts.boot_time > 1_000_000_000);
        assert!(facts.ip_addresses.iter().all(|a| !a.is_loopback()));
    }
}
