//! The admin service behind `hygienectl`. Every call requires an admin certificate.

use hygiene_proto::v1::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use crate::identity::{self, Role};
use crate::model::{ConnectionFilter, FindingFilter, Host, HostFilter};
use crate::store::{Store, StoreError};

pub struct AdminEndpoint {
    store: Store,
}

impl AdminEndpoint {
    pub fn new(store: Store) -> Self {
        AdminEndpoint { store }
    }
}

fn internal(err: StoreError) -> Status {
    tracing::error!("{err}");
    Status::internal(err.to_string())
}

#[tonic::async_trait]
impl AdminService for AdminEndpoint {
    async fn list_hosts(
        &self,
        request: Request<v1::ListHostsRequest>,
    ) -> Result<Response<v1::ListHostsResponse>, Status> {
        identity::require(&request, Role::Admin)?;
        let r = request.get_ref();
        let given = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let package_below = match (
            given(&r.package_below_name),
            given(&r.package_below_version),
        ) {
            (Some(name), Some(version)) => Some((name, version)),
            (None, None) => None,
            _ => {
                return Err(Status::invalid_argument(
                    "--package-below needs both a name and a version: NAME=VERSION",
                ));
            }
        };
        let missing_kb = match given(&r.missing_kb) {
            Some(kb) => Some(crate::model::normalise_kb(&kb).ok_or_else(|| {
                Status::invalid_argument(format!("{kb:?} is not a KB number (KB5034441)"))
            })?),
            None => None,
        };
        let filter = HostFilter {
            infected_only: r.infected_only,
            has_package: given(&r.has_package),
            package_below,
            missing_kb,
        };
        let hosts = self.store.list_hosts(&filter).await.map_err(internal)?;
        let hosts = hosts.into_iter().map(host_entry).collect();
        Ok(Response::new(v1::ListHostsResponse { hosts }))
    }

    async fn get_host(
        &self,
        request: Request<v1::GetHostRequest>,
    ) -> Result<Response<v1::GetHostResponse>, Status> {
        identity::require(&request, Role::Admin)?;
        let host_id = &request.get_ref().host_id;
        let detail = self
            .store
            .host_detail(host_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no host {host_id:?}")))?;
        let inventory = detail.inventory.map(|i| v1::HostInventory {
            family: i.os.family,
            os_id: i.os.id,
            version_id: i.os.version_id,
            pretty_name: i.os.pretty_name,
            kernel: i.os.kernel,
            arch: i.os.arch,
            boot_time: i.os.boot_time.unwrap_or(0),
            last_package_change: i.os.last_package_change.unwrap_or(0),
            product_name: i.os.product_name,
            edition: i.os.edition,
            display_version: i.os.display_version,
            build: i.os.build,
            installation_type: i.os.installation_type,
            collected_ms: i.collected_ms,
            received_ms: i.received_ms,
            partial: i
                .gaps
                .into_iter()
                .map(|g| format!("{}: {}", g.source, g.reason))
                .collect(),
        });
        Ok(Response::new(v1::GetHostResponse {
            host: Some(host_entry(detail.host)),
            inventory,
            package_count: detail.package_count,
            hotfix_count: detail.hotfix_count,
            program_count: detail.program_count,
            last_change_seen_ms: detail.last_change_seen_ms.unwrap_or(0),
            connection_count: detail.connection_count,
            connections_collected_ms: detail.connections_collected_ms.unwrap_or(0),
            connections_partial: detail.connections_partial.unwrap_or_default(),
        }))
    }

    async fn list_connections(
        &self,
        request: Request<v1::ListConnectionsRequest>,
    ) -> Result<Response<v1::ListConnectionsResponse>, Status> {
        identity::require(&request, Role::Admin)?;
        let r = request.get_ref();
        let remote = match r.remote.trim() {
            "" => None,
            text => Some(parse_network(text).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{text:?} is neither an IP address nor a CIDR network (10.0.0.0/8)"
                ))
            })?),
        };
        let filter = ConnectionFilter {
            host_id: (!r.host_id.is_empty()).then(|| r.host_id.clone()),
            remote,
        };
        let connections = self
            .store
            .list_connections(&filter)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|c| v1::ConnectionEntry {
                host_id: c.host_id,
                proto: c.connection.proto,
                local_addr: c.connection.local_addr,
                local_port: c.connection.local_port.into(),
                remote_addr: c.connection.remote_addr,
                remote_port: c.connection.remote_port.into(),
                state: c.connection.state,
                pid: c.connection.pid.unwrap_or(0),
                process: c.connection.process.unwrap_or_default(),
                collected_ms: c.collected_ms,
            })
            .collect();
        Ok(Response::new(v1::ListConnectionsResponse { connections }))
    }

    async fn list_findings(
        &self,
        request: Request<v1::ListFindingsRequest>,
    ) -> Result<Response<v1::ListFindingsResponse>, Status> {
        identity::require(&request, Role::Admin)?;
        let host_id = &request.get_ref().host_id;
        let filter = FindingFilter {
            host_id: (!host_id.is_empty()).then(|| host_id.clone()),
        };
        let findings = self.store.list_findings(&filter).await.map_err(internal)?;
        let findings = findings
            .into_iter()
            .map(|f| v1::FindingEntry {
                id: f.id,
                host_id: f.host_id,
                path: f.path,
                sha256: f.sha256,
                size: f.size,
                kind: f.kind.as_str().to_owned(),
                rule: f.rule,
                namespace: f.namespace,
                ioc_comment: f.ioc_comment,
                state: f.state,
                first_seen_ms: f.first_seen_ms,
                last_seen_ms: f.last_seen_ms,
            })
            .collect();
        Ok(Response::new(v1::ListFindingsResponse { findings }))
    }

    async fn list_packages(
        &self,
        request: Request<v1::ListPackagesRequest>,
    ) -> Result<Response<v1::ListPackagesResponse>, Status> {
        identity::require(&request, Role::Admin)?;
        let host_id = &request.get_ref().host_id;
        if host_id.is_empty() {
            return Err(Status::invalid_argument("a host id is required"));
        }
        let packages = self.store.list_packages(host_id).await.map_err(internal)?;
        let packages = packages
            .into_iter()
            .map(|p| v1::PackageEntry {
                host_id: p.host_id,
                name: p.package.name,
                version: p.package.version,
                arch: p.package.arch,
                source: p.package.source.unwrap_or_default(),
                installed_ms: p.installed_ms,
                manager: p
                    .package
                    .manager
                    .map_or("", crate::version::Scheme::as_str)
                    .to_owned(),
            })
            .collect();
        Ok(Response::new(v1::ListPackagesResponse { packages }))
    }
}

fn host_entry(h: Host) -> v1::HostEntry {
    v1::HostEntry {
        host_id: h.host_id,
        hostname: h.hostname,
        os_name: h.os_name,
        os_version: h.os_version,
        kernel_version: h.kernel_version,
        arch: h.arch,
        ip_addresses: h.ip_addresses,
        agent_version: h.agent_version,
        peer_address: h.peer_address.unwrap_or_default(),
        first_seen_ms: h.first_seen_ms,
        last_seen_ms: h.last_seen_ms,
        online: h.online,
        open_findings: h.open_findings,
    }
}

/// An address (a network of one) or a CIDR network.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_single_addresses_parse() {
        let net = parse_network("10.1.0.0/16").unwrap();
        assert!(net.contains(&"10.1.200.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(!net.contains(&"10.2.0.1".parse::<std::net::IpAddr>().unwrap()));
        let one = parse_network("2001:db8::1").unwrap();
        assert!(one.contains(&"2001:db8::1".parse::<std::net::IpAddr>().unwrap()));
        assert!(!one.contains(&"2001:db8::2".parse::<std::net::IpAddr>().unwrap()));
        for bad in ["10.0.0.0/33", "example.org", "10.0.0", ""] {
            assert!(parse_network(bad).is_none(), "{bad}");
        }
    }
}
