//! The OpenAPI 3.1 document of `/api/v1`, generated from the code: each
//! route's line in the route table carries a [`Doc`] naming its request
//! and response types, whose schemas come from their `utoipa::ToSchema`
//! derives (so they follow the serde attributes the server answers with).
//! Errors are RFC 9457 problem details on every operation.

use std::sync::OnceLock;

use utoipa::ToSchema;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, Paths, Ref, RefOr, Required,
    ResponseBuilder, ResponsesBuilder, Server,
};

/// A request or response body: its media type and schema, and the named
/// schemas it refers to.
pub(crate) struct Body {
    media: &'static str,
    schema: RefOr<Schema>,
    components: Vec<(String, RefOr<Schema>)>,
}

fn named<T: ToSchema>() -> Vec<(String, RefOr<Schema>)> {
    let mut components = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut components);
    components
}

/// A JSON body of type `T`.
pub(crate) fn json<T: ToSchema>() -> Body {
    Body { media: "application/json", schema: Ref::from_schema_name(T::name()).into(), components: named::<T>() }
}

/// A JSON array of `T`.
pub(crate) fn list<T: ToSchema>() -> Body {
    let items = Ref::from_schema_name(T::name());
    Body { media: "application/json", schema: ArrayBuilder::new().items(items).into(), components: named::<T>() }
}

/// Raw bytes (a blob upload).
pub(crate) fn bytes() -> Body {
    let schema = ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::Custom("binary".into())));
    Body { media: "application/octet-stream", schema: schema.into(), components: Vec::new() }
}

/// What a query parameter holds.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Integer,
}

/// One route's documentation.
pub(crate) struct Doc {
    summary: &'static str,
    request: Option<Body>,
    /// The success status and body.
    ok: (u16, Body),
    query: Vec<(&'static str, Kind, &'static str)>,
    /// `?follow=1` answers server-sent events instead.
    streams: bool,
}

/// A route answering `200` with `ok`.
pub(crate) fn doc(summary: &'static str, ok: Body) -> Doc {
    Doc { summary, request: None, ok: (200, ok), query: Vec::new(), streams: false }
}

impl Doc {
    pub(crate) fn body(self, body: Body) -> Doc {
        Doc { request: Some(body), ..self }
    }

    pub(crate) fn status(self, status: u16) -> Doc {
        Doc { ok: (status, self.ok.1), ..self }
    }

    pub(crate) fn query(mut self, name: &'static str, kind: Kind, description: &'static str) -> Doc {
        self.query.push((name, kind, description));
        self
    }

    /// Adds `?follow=1`, answering `text/event-stream`.
    pub(crate) fn streams(self) -> Doc {
        Doc { streams: true, ..self }.query("follow", Kind::Text, "1: stream as server-sent events")
    }
}

/// What `helix_core::ProjectName::parse` accepts.
const PROJECT_NAME: &str = "^[a-z0-9]+(-[a-z0-9]+)*$";

/// Errors every operation may answer (a 500 is a bug, so not promised).
const PROBLEMS: &[(u16, &str)] = &[
    (400, "the request is malformed: body, parameters or names"),
    (401, "no token, or a token that is expired, revoked or unknown"),
    (403, "the token's role or scope does not allow this, or a policy denied it"),
    (404, "no such object (or one of another organisation)"),
    (409, "the object's state does not allow this"),
    (413, "the body is too large"),
    (422, "the body is well-formed but wrong"),
    (429, "over the token's rate; retry after `Retry-After` seconds"),
    (503, "a dependency is unavailable; retry"),
];

fn operation(method: &str, path: &str, doc: Doc, components: &mut Vec<(String, RefOr<Schema>)>) -> Operation {
    let mut op = OperationBuilder::new()
        .summary(Some(doc.summary))
        .operation_id(Some(operation_id(method, path)))
        .tag(path.trim_start_matches('/').split('/').next().unwrap_or("api"))
        .security(SecurityRequirement::new("token", Vec::<String>::new()));
    for name in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
        let mut string = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1));
        if name == "project" {
            string = string.pattern(Some(PROJECT_NAME)).max_length(Some(63));
        }
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string)),
        );
    }
    for (name, kind, description) in doc.query {
        let schema = match kind {
            Kind::Text => ObjectBuilder::new().schema_type(Type::String),
            Kind::Integer => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        };
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema)),
        );
    }
    if let Some(body) = doc.request {
        components.extend(body.components);
        let content = Content::new(Some(body.schema));
        op = op.request_body(Some(
            RequestBodyBuilder::new().required(Some(Required::True)).content(body.media, content).build(),
        ));
    }
    let (status, body) = doc.ok;
    components.extend(body.components);
    let mut ok = ResponseBuilder::new().description(doc.summary).content(body.media, Content::new(Some(body.schema)));
    if doc.streams {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let event = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("event", text())
            .property("id", text())
            .property("data", text())
            .required("data");
        ok = ok.content("text/event-stream", Content::new(Some(event)));
    }
    let mut responses = ResponsesBuilder::new().response(status.to_string(), ok.build());
    for (status, description) in PROBLEMS {
        let problem = Content::new(Some(Ref::from_schema_name("Problem")));
        responses = responses.response(
            status.to_string(),
            ResponseBuilder::new().description(*description).content("application/problem+json", problem),
        );
    }
    op.responses(responses.build()).build()
}

/// `GET /projects/{project}/deployments` → `get_projects_project_deployments`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> =
        path.split('/').filter(|s| !s.is_empty()).map(|s| s.trim_matches(|c| c == '{' || c == '}')).collect();
    format!("{}_{}", method.to_ascii_lowercase(), words.join("_"))
}

fn http_method(method: &str) -> HttpMethod {
    match method {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        other => panic!("no OpenAPI method for {other}"),
    }
}

/// The document for every route of the table.
pub(crate) fn document() -> &'static [u8] {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut components = named::<helix_core::api::Problem>();
        let mut paths = Paths::new();
        for endpoint in crate::routes::endpoints() {
            let op = operation(endpoint.method, endpoint.path, endpoint.doc, &mut components);
            let item = PathItem::new(http_method(endpoint.method), op);
            match paths.paths.get_mut(endpoint.path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    paths.paths.insert(endpoint.path.to_owned(), item);
                }
            }
        }
        let mut built = ComponentsBuilder::new().security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API token (helix tokens create)"))
                    .build(),
            ),
        );
        for (name, schema) in components {
            built = built.schema(name, schema);
        }
        let api: OpenApi = OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("HelixStack API")
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some("Deployments, builds, projects, identity, env, policy, audit and webhooks.")),
            )
            .servers(Some([Server::new("/api/v1")]))
            .paths(paths)
            .components(Some(built.build()))
            .build();
        serde_json::to_vec_pretty(&api).expect("an OpenAPI document serializes")
    })
}

/// `GET /api/v1/openapi.json`: open, like `/healthz`.
pub(crate) async fn serve() -> impl axum::response::IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/json")], document())
}
