//! How the OpenAPI document describes an SSE stream. OpenAPI 3.1 reads the `schema` of a
//! `text/event-stream` response as the schema of one event: an object with the event's name,
//! its id and its `data`, a string. The JSON inside `data` is described with JSON Schema's
//! `contentMediaType` and `contentSchema`, so a client generator and schemathesis can check
//! every event's payload, not only its frame.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::batches::BatchView;
use crate::changes::StatusChange;

/// The data of a `reset` event: the read model was rebuilt, reload over REST.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ResetNotice {
    /// The live read-model generation the stream goes on in.
    pub generation: i32,
    pub message: &'static str,
}

/// The events of a submission stream: `status`, and `reset` after a rebuild.
pub struct StatusEvents;

/// The events of a batch stream: `counts`, and `reset` after a rebuild.
pub struct BatchEvents;

impl PartialSchema for StatusEvents {
    fn schema() -> RefOr<Schema> {
        one_of([event::<StatusChange>("status"), event::<ResetNotice>("reset")])
    }
}

impl ToSchema for StatusEvents {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StatusEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        collect::<StatusChange>(schemas);
        collect::<ResetNotice>(schemas);
    }
}

impl PartialSchema for BatchEvents {
    fn schema() -> RefOr<Schema> {
        one_of([event::<BatchView>("counts"), event::<ResetNotice>("reset")])
    }
}

impl ToSchema for BatchEvents {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BatchEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        collect::<BatchView>(schemas);
        collect::<ResetNotice>(schemas);
    }
}

fn one_of(events: [Schema; 2]) -> RefOr<Schema> {
    let mut choice = OneOfBuilder::new();
    for event in events {
        choice = choice.item(event);
    }
    RefOr::T(Schema::OneOf(choice.build()))
}

/// One event named `name` whose data is `T` as JSON.
fn event<T: ToSchema>(name: &str) -> Schema {
    let mut data = ObjectBuilder::new().schema_type(Type::String).content_media_type("application/json").build();
    // utoipa has no builder for `contentSchema`; its extensions serialise flat into the object.
    let reference = serde_json::to_value(Ref::from_schema_name(T::name())).unwrap_or_default();
    data.extensions.get_or_insert_with(Default::default).insert("contentSchema".to_owned(), reference);
    Schema::Object(
        ObjectBuilder::new()
            .property("event", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([name])))
            .required("event")
            .property(
                "id",
                ObjectBuilder::new().schema_type(Type::String).description(Some("the event's position: a reconnect sends it as `Last-Event-ID`")),
            )
            .required("id")
            .property("data", data)
            .required("data")
            .build(),
    )
}

fn collect<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_data_schema_for_the_document_to_check() {
        let schema = serde_json::to_value(StatusEvents::schema()).unwrap();
        let status = &schema["oneOf"][0];
        assert_eq!(status["properties"]["event"]["enum"], serde_json::json!(["status"]));
        assert_eq!(status["properties"]["data"]["contentMediaType"], "application/json");
        assert_eq!(status["properties"]["data"]["contentSchema"]["$ref"], "#/components/schemas/StatusChange");
        assert_eq!(schema["oneOf"][1]["properties"]["data"]["contentSchema"]["$ref"], "#/components/schemas/ResetNotice");
    }
}
