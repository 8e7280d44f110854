//! Reading a request: query parameters, a page of a collection, path parameters, a JSON body;
//! each with a JSON 400 when it cannot be read.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Query parameters; a malformed query string is a JSON 400, unknown parameters are ignored.
pub(crate) struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(map)| Params(map))
            .map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text()))
    }
}

impl Params {
    /// A parameter's value; present but empty counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A comma-separated list (`state=FIN_OK,FIN_ERROR`); empty when absent.
    pub(super) fn list(&self, key: &str) -> Vec<&str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(
                        "INVALID_QUERY",
                        format!("Query parameter {key} must be an integer, got {v:?}"),
                    )
                })
            })
            .transpose()
    }

    pub(super) fn float(&self, key: &str) -> Result<Option<f64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "INVALID_QUERY",
                            format!("Query parameter {key} must be a number, got {v:?}"),
                        )
                    })
            })
            .transpose()
    }

    /// `limit` (clamped to 1..=max) and `offset` (not negative).
    pub(super) fn page(&self, default_limit: usize, max_limit: usize) -> Result<Page, ApiError> {
        let limit = match self.int("limit")? {
            None => default_limit,
            Some(n) => usize::try_from(n.max(1)).unwrap_or(max_limit),
        }
        .min(max_limit);
        let offset = match self.int("offset")? {
            None => 0,
            Some(n) => usize::try_from(n).map_err(|_| {
                ApiError::bad_request(
                    "INVALID_QUERY",
                    "Query parameter offset must not be negative",
                )
            })?,
        };
        Ok(Page { limit, offset })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Page {
    pub(super) limit: usize,
    pub(super) offset: usize,
}

impl Page {
    pub(super) fn of<'a, T>(
        &self,
        items: impl Iterator<Item = T> + 'a,
    ) -> impl Iterator<Item = T> + 'a {
        items.skip(self.offset).take(self.limit)
    }
}

/// Path parameters, with a JSON 400 when they cannot be read.
pub(crate) struct PathArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathArgs(t))
            .map_err(|e| ApiError::bad_request("INVALID_PATH", e.body_text()))
    }
}

/// A JSON body, with a JSON 400 when it cannot be read.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "INVALID_JSON",
            format!("The body is not what was expected: {e}"),
        )
    })
}
