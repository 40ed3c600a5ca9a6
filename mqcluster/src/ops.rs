//! The administrator's operations (`mqemu cluster move|online|offline|fail`), written as
//! requests into the coordination store for the owning node to carry out.

use crate::coord::{Coordination, ResourceAction, ResourceRequest};
use crate::error::{ClusterError, Result, Win32};
use crate::model::ClusterConfig;

/// What an operation names: a group or a resource.
enum Target {
    Group(String),
    Resource { group: String, resource: String },
}

fn target(config: &ClusterConfig, name: &str) -> Result<Target> {
    if let Some(g) = config.group(name) {
        return Ok(Target::Group(g.name.clone()));
    }
    if let Some((g, r)) = config.resource(name) {
        return Ok(Target::Resource {
            group: g.name.clone(),
            resource: r.name.clone(),
        });
    }
    Err(ClusterError::refused(
        Win32::ResourceNotFound,
        format!("no group or resource is named {name}"),
    ))
}

/// Moves a group to `to`, or to the best other node.
pub fn move_group(
    config: &ClusterConfig,
    coord: &dyn Coordination,
    group: &str,
    to: Option<&str>,
) -> Result<()> {
    let g = config.group(group).ok_or_else(|| {
        ClusterError::refused(Win32::GroupNotFound, format!("no group is named {group}"))
    })?;
    if let Some(to) = to {
        if config.node(to).is_none() {
            return Err(ClusterError::refused(
                Win32::NodeNotFound,
                format!("{to} is not a node of the cluster"),
            ));
        }
        if !g.can_run_on(to) {
            return Err(ClusterError::refused(
                Win32::HostNodeNotAvailable,
                format!(
                    "{to} is not a possible owner of every resource of {}",
                    g.name
                ),
            ));
        }
    }
    coord.update_record(&g.name, &mut |r| {
        r.move_to = Some(to.unwrap_or_default().to_owned());
    })?;
    Ok(())
}

/// Brings a group (clearing a failed state) or a resource online.
pub fn online(config: &ClusterConfig, coord: &dyn Coordination, name: &str) -> Result<()> {
    match target(config, name)? {
        // The nodes it failed on stay last in line, so it goes where it has not failed.
        Target::Group(g) => coord.update_record(&g, &mut |r| {
            r.offline = false;
            r.failed = false;
        }),
        Target::Resource { group, resource } => {
            request(coord, &group, &resource, ResourceAction::Online)
        }
    }?;
    Ok(())
}

/// Takes a group or a resource (with what depends on it) offline.
pub fn offline(config: &ClusterConfig, coord: &dyn Coordination, name: &str) -> Result<()> {
    match target(config, name)? {
        Target::Group(g) => coord.update_record(&g, &mut |r| r.offline = true),
        Target::Resource { group, resource } => {
            request(coord, &group, &resource, ResourceAction::Offline)
        }
    }?;
    Ok(())
}

/// Fails a resource as if its health check had failed (fault injection).
pub fn fail(config: &ClusterConfig, coord: &dyn Coordination, resource: &str) -> Result<()> {
    match target(config, resource)? {
        Target::Resource { group, resource } => {
            request(coord, &group, &resource, ResourceAction::Fail)?;
            Ok(())
        }
        Target::Group(g) => Err(ClusterError::refused(
            Win32::ResourceNotFound,
            format!("{g} is a group; fail one of its resources"),
        )),
    }
}

fn request(
    coord: &dyn Coordination,
    group: &str,
    resource: &str,
    action: ResourceAction,
) -> Result<crate::coord::GroupRecord> {
    coord.update_record(group, &mut |r| {
        match action {
            ResourceAction::Offline => {
                if !r
                    .held_offline
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(resource))
                {
                    r.held_offline.push(resource.to_owned());
                }
            }
            ResourceAction::Online => r.held_offline.retain(|h| !h.eq_ignore_ascii_case(resource)),
            ResourceAction::Fail => {}
        }
        r.requests.push(ResourceRequest {
            resource: resource.to_owned(),
            action,
        })
    })
}
