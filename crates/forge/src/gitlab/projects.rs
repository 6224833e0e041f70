//! Projects and groups: a reference (id or full path) to its id, a group to every project in it
//! (subgroups included), and the configuration resolved into the projects mayfly serves, each
//! with the runner scope its jobs' runners are registered in.

use super::client::{Client, PER_PAGE, segment};
use super::config::{GitlabConfig, RunnerType, checked_ref};
use super::error::Result;
use super::ratelimit::Priority;
use super::runners::RunnerScope;
use reqwest::Method;
use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Project {
    pub id: u64,
    /// `group/subgroup/project`, as GitLab spells it: the scope of the project's jobs' keys.
    pub path_with_namespace: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Group {
    pub id: u64,
    pub full_path: String,
}

/// A project mayfly serves and where its jobs' runners register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub project: Project,
    pub runner_scope: RunnerScope,
}

/// The configuration's projects and groups, resolved: every project served, once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    pub served: Vec<Served>,
}

impl Scopes {
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.served.iter().map(|s| &s.project)
    }

    /// The project with this id or full path (case-insensitive, as GitLab's paths are).
    pub fn project(&self, reference: &str) -> Option<&Served> {
        match reference.parse::<u64>() {
            Ok(id) => self.served.iter().find(|s| s.project.id == id),
            Err(_) => self.served.iter().find(|s| {
                s.project
                    .path_with_namespace
                    .eq_ignore_ascii_case(reference)
            }),
        }
    }

    /// Whether mayfly serves this project's jobs: a job of any other project is foreign.
    pub fn owns(&self, project: &str) -> bool {
        self.project(project).is_some()
    }

    /// Where a runner for a job of `project` registers.
    pub fn scope_for(&self, project: &str) -> Option<&RunnerScope> {
        self.project(project).map(|s| &s.runner_scope)
    }

    /// Every runner scope, once: the runner lists to read.
    pub fn runner_scopes(&self) -> Vec<RunnerScope> {
        let mut out: Vec<RunnerScope> = Vec::new();
        for s in &self.served {
            if !out.contains(&s.runner_scope) {
                out.push(s.runner_scope.clone());
            }
        }
        out
    }
}

impl Client {
    /// `GET /projects/:id`, by id or full path.
    pub async fn project(&self, reference: &str) -> Result<Project> {
        let url = self.url(&format!("/projects/{}", segment(reference)));
        self.send(&super::client::Call::new(
            Method::GET,
            url,
            Priority::Essential,
        ))
        .await?
        .json()
    }

    /// `GET /groups/:id`, by id or full path.
    pub async fn group(&self, reference: &str) -> Result<Group> {
        let url = self.url(&format!("/groups/{}", segment(reference)));
        self.send(&super::client::Call::new(
            Method::GET,
            url,
            Priority::Essential,
        ))
        .await?
        .json()
    }

    /// Every project of the group and its subgroups, across pages.
    pub async fn group_projects(&self, group: u64) -> Result<Vec<Project>> {
        let url = self.url(&format!(
            "/groups/{group}/projects?include_subgroups=true&simple=true&per_page={PER_PAGE}"
        ));
        self.list(url, Priority::Essential).await
    }

    /// The projects of the configuration, with their runner scopes: a configured project gets
    /// project runners, a project found through a configured group that group's runners,
    /// unless `runner_type` says otherwise. Costs one call per project, and one per group and
    /// page of its projects.
    pub async fn resolve(&self, config: &GitlabConfig) -> Result<Scopes> {
        let mut scopes = Scopes::default();
        let add = |scopes: &mut Scopes, project: Project, scope: RunnerScope| {
            if !scopes.served.iter().any(|s| s.project.id == project.id) {
                scopes.served.push(Served {
                    project,
                    runner_scope: scope,
                });
            }
        };
        for reference in &config.projects {
            let reference =
                checked_ref("projects", reference).map_err(|e| super::error::Error::Invalid {
                    message: e.to_string(),
                })?;
            let p = self.project(&reference).await?;
            let scope = match config.runner_type {
                Some(RunnerType::Instance) => RunnerScope::Instance,
                _ => RunnerScope::Project {
                    id: p.id,
                    path: p.path_with_namespace.clone(),
                },
            };
            add(&mut scopes, p, scope);
        }
        for reference in &config.groups {
            let reference =
                checked_ref("groups", reference).map_err(|e| super::error::Error::Invalid {
                    message: e.to_string(),
                })?;
            let g = self.group(&reference).await?;
            for p in self.group_projects(g.id).await? {
                let scope = match config.runner_type {
                    Some(RunnerType::Instance) => RunnerScope::Instance,
                    Some(RunnerType::Project) => RunnerScope::Project {
                        id: p.id,
                        path: p.path_with_namespace.clone(),
                    },
                    _ => RunnerScope::Group {
                        id: g.id,
                        path: g.full_path.clone(),
                    },
                };
                add(&mut scopes, p, scope);
            }
        }
        Ok(scopes)
    }
}
