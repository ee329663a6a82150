//! What the HTTP embedders share beyond [`provider_http`]: mapping its failures into
//! [`EmbedError`], one request/response cycle ([`call`]), the batching loop ([`embed_in_batches`])
//! and the batch bookkeeping (blank texts, dimension checks, normalisation) that both providers
//! need in the same way.

use std::future::Future;
use std::sync::OnceLock;

use reqwest::header::HeaderValue;
use serde::de::DeserializeOwned;

pub(crate) use provider_http::{RawResponse, body_excerpt, build_client, is_transient_status, redact, retry_after};

use crate::{EmbedError, normalize};

/// The error `embed` returns when there is no client (constructors are infallible by
/// interface, so the reason is kept until the first call).
pub(crate) fn client_unavailable(provider: &'static str, reason: &str) -> EmbedError {
    permanent(provider, None, reason.to_owned())
}

/// A sensitive header value for the API key (see [`provider_http::secret_header`]).
pub(crate) fn secret_header(provider: &'static str, value: &str) -> Result<HeaderValue, EmbedError> {
    provider_http::secret_header(value).map_err(|e| permanent(provider, None, e.to_string()))
}

/// Sends the request, checks the status and parses the body as `T`. Transport failures are
/// typed (timeouts and connection problems transient, malformed requests permanent),
/// redirects and other non-2xx statuses go through `error_from_response`, and a 2xx body of
/// the wrong shape is permanent, quoting the body.
pub(crate) async fn call<T: DeserializeOwned>(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    api_key: &str,
    error_from_response: fn(&RawResponse, &str) -> EmbedError,
) -> Result<T, EmbedError> {
    let response = provider_http::send(request, api_key).await.map_err(|e| {
        let message = e.to_string();
        if e.is_transient() {
            EmbedError::Transient { provider, status: None, message, retry_after: None }
        } else {
            permanent(provider, None, message)
        }
    })?;
    if !response.is_success() {
        return Err(error_from_response(&response, api_key));
    }
    serde_json::from_slice(&response.body).map_err(|e| {
        let excerpt = body_excerpt(response.status, &response.body);
        permanent(
            provider,
            Some(response.status),
            redact(&format!("unexpected response body ({e}): {excerpt}"), api_key),
        )
    })
}

/// Builds the error for a non-success status. `message` must already be redacted.
pub(crate) fn status_error(
    provider: &'static str,
    status: u16,
    message: String,
    transient: bool,
    retry_after: Option<std::time::Duration>,
) -> EmbedError {
    if transient {
        EmbedError::Transient { provider, status: Some(status), message, retry_after }
    } else {
        permanent(provider, Some(status), message)
    }
}

/// The error for a redirect (see [`provider_http::redirect_message`]); `None` for any other
/// status.
pub(crate) fn redirect_error(provider: &'static str, response: &RawResponse, api_key: &str) -> Option<EmbedError> {
    provider_http::redirect_message(response, api_key)
        .map(|message| permanent(provider, Some(response.status), message))
}

/// Shorthand for a permanent error.
pub(crate) fn permanent(provider: &'static str, status: Option<u16>, message: String) -> EmbedError {
    EmbedError::Permanent { provider, status, message }
}

/// Embeds `texts` the way both HTTP embedders do: blank texts are not sent, the rest go out in
/// requests of at most `max_per_request` inputs, and the result has one vector per text, in
/// order (zero vectors for the blank ones).
pub(crate) async fn embed_in_batches<'a, F, Fut>(
    texts: &'a [String],
    max_per_request: usize,
    dimension: &Dimension,
    mut embed_batch: F,
) -> Result<Vec<Vec<f32>>, EmbedError>
where
    F: FnMut(Vec<&'a str>) -> Fut,
    Fut: Future<Output = Result<Vec<Vec<f32>>, EmbedError>>,
{
    let sent = non_blank(texts);
    let mut vectors = Vec::with_capacity(sent.len());
    for chunk in sent.chunks(max_per_request) {
        vectors.extend(embed_batch(chunk.iter().map(|&i| texts[i].as_str()).collect()).await?);
    }
    Ok(assemble(texts.len(), &sent, vectors, dimension.get()))
}

/// Implements [`Embedder`](crate::Embedder) for an HTTP embedder: a type with the fields
/// `model_id: String` and `dimension: Dimension` and a method
/// `async fn embed_batch(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>` that
/// embeds one request's worth of non-blank texts; `embed` goes through [`embed_in_batches`]
/// with at most `$max_per_request` texts per request.
macro_rules! impl_embedder {
    ($embedder:ty, $max_per_request:expr) => {
        impl $crate::Embedder for $embedder {
            fn model_id(&self) -> &str {
                &self.model_id
            }

            fn dimension(&self) -> usize {
                self.dimension.get()
            }

            fn embed<'a>(
                &'a self,
                texts: &'a [String],
            ) -> futures_util::future::BoxFuture<'a, Result<Vec<Vec<f32>>, $crate::EmbedError>> {
                Box::pin($crate::transport::embed_in_batches(
                    texts,
                    $max_per_request,
                    &self.dimension,
                    move |inputs| async move { self.embed_batch(&inputs).await },
                ))
            }
        }
    };
}
pub(crate) use impl_embedder;

/// Positions of the texts worth sending. Providers reject empty inputs with a 400, which would
/// fail the whole batch for one blank chunk; blank texts get a zero vector instead, as the
/// hashing embedder gives them.
fn non_blank(texts: &[String]) -> Vec<usize> {
    texts.iter().enumerate().filter(|(_, t)| !t.trim().is_empty()).map(|(i, _)| i).collect()
}

/// Puts the vectors of the sent texts back at their positions, zero vectors elsewhere.
fn assemble(count: usize, sent: &[usize], vectors: Vec<Vec<f32>>, dimension: usize) -> Vec<Vec<f32>> {
    let mut out = vec![Vec::new(); count];
    for (&i, vector) in sent.iter().zip(vectors) {
        out[i] = vector;
    }
    for slot in out.iter_mut().filter(|v| v.is_empty()) {
        *slot = vec![0.0; dimension];
    }
    out
}

/// The vector length an HTTP embedder promises: the requested one, else the model's known
/// native size, else whatever the first response had (then pinned, so one embedder never
/// returns vectors of two sizes).
#[derive(Debug)]
pub(crate) struct Dimension {
    fixed: Option<usize>,
    learned: OnceLock<usize>,
}

impl Dimension {
    pub(crate) fn new(fixed: Option<usize>) -> Self {
        Self { fixed, learned: OnceLock::new() }
    }

    /// The dimension, or 0 while it is still unknown.
    pub(crate) fn get(&self) -> usize {
        self.fixed.or_else(|| self.learned.get().copied()).unwrap_or(0)
    }

    /// Checks each vector's length and values, then normalises it: a provider that silently
    /// ignores the requested dimension would otherwise corrupt the vector store.
    pub(crate) fn finish(
        &self,
        provider: &'static str,
        mut vectors: Vec<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        for vector in &mut vectors {
            let got = vector.len();
            let expected = self.fixed.unwrap_or_else(|| *self.learned.get_or_init(|| got));
            if got != expected {
                return Err(permanent(
                    provider,
                    None,
                    format!(
                        "the model returned {got}-dimensional vectors but {expected} were expected; \
                         set the embeddings dimension to one the model supports"
                    ),
                ));
            }
            if got == 0 || vector.iter().any(|x| !x.is_finite()) {
                return Err(permanent(provider, None, "the model returned an empty or non-finite vector".to_owned()));
            }
            normalize(vector);
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_get_zero_vectors_in_place() {
        let texts: Vec<String> = ["a", " ", "b", ""].iter().map(|s| (*s).to_owned()).collect();
        let sent = non_blank(&texts);
        assert_eq!(sent, [0, 2]);
        let out = assemble(texts.len(), &sent, vec![vec![1.0, 0.0], vec![0.0, 1.0]], 2);
        assert_eq!(out, [vec![1.0, 0.0], vec![0.0, 0.0], vec![0.0, 1.0], vec![0.0, 0.0]]);
    }

    #[test]
    fn unknown_dimension_is_learned_then_enforced() {
        let dimension = Dimension::new(None);
        assert_eq!(dimension.get(), 0);
        let out = dimension.finish("test", vec![vec![3.0, 4.0]]).expect("first response sets the dimension");
        assert_eq!(out, [vec![0.6, 0.8]]);
        assert_eq!(dimension.get(), 2);
        let err = dimension.finish("test", vec![vec![1.0, 0.0, 0.0]]).expect_err("size changed");
        assert!(!err.is_transient());
        let err = Dimension::new(Some(2)).finish("test", vec![vec![f32::NAN, 1.0]]).expect_err("NaN");
        assert!(!err.is_transient());
    }
}
