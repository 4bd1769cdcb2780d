//! Scheduled posts: a generated container published to a platform at a time.

use crate::clock::Timestamp;
use crate::id::{ContainerId, OrgId, PostId, ProjectId};

pub const PLATFORMS: [&str; 8] = ["tiktok", "instagram", "youtube", "facebook", "x", "linkedin", "pinterest", "threads"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PostStatus {
    Scheduled,
    Published,
    Failed,
    Canceled,
}

impl PostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PostStatus::Scheduled => "scheduled",
            PostStatus::Published => "published",
            PostStatus::Failed => "failed",
            PostStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(Self::Scheduled),
            "published" => Some(Self::Published),
            "failed" => Some(Self::Failed),
            "canceled" => Some(Self::Canceled),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ScheduledPost {
    pub id: PostId,
    pub org_id: OrgId,
    pub project_id: ProjectId,
    pub container_id: ContainerId,
    pub platform: String,
    pub scheduled_for: Timestamp,
    pub status: PostStatus,
    pub published_at: Option<Timestamp>,
    pub canceled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub seq: i64,
}
