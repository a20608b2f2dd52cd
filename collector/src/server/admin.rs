//! The admin service behind `hygienectl`. Every call requires an admin certificate.

use hygiene_proto::v1::{self, admin_service_server::AdminService};
use tonic::{Request, Response, Status};

use crate::identity::{self, Role};
use crate::model::{FindingFilter, HostFilter};
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
        let filter = HostFilter {
            infected_only: request.get_ref().infected_only,
        };
        let hosts = self.store.list_hosts(&filter).await.map_err(internal)?;
        let hosts = hosts
            .into_iter()
            .map(|h| v1::HostEntry {
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
            })
            .collect();
        Ok(Response::new(v1::ListHostsResponse { hosts }))
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
            })
            .collect();
        Ok(Response::new(v1::ListPackagesResponse { packages }))
    }
}
