//! The OpenAPI 3.1 description of the edge's HTTP API: every route of [`crate::routes`], its
//! parameters, bodies, answers and errors, in one place.
//!
//! The answers' schemas come from the types the edge serializes (`oms_domain::api`, [`Accepted`],
//! the problem body); the request bodies, which the edge reads field by field from raw JSON to
//! give precise errors, are described by the small types below with the same limits as the
//! parsers. The operations are functions without bodies: the routes stay warp filters, and this
//! module says what they accept and answer.
//!
//! `GET /openapi.json` serves [`document`]; `docs/openapi.json` is the same text, kept equal by
//! the test below (`OMS_BLESS=1 cargo test -p oms-edge --lib openapi` writes it anew).

use oms_domain::api::{
    CustomerView, HistoryEntry, OrderHistory, OrderLine, OrderPage, OrderStatus, OrderView,
    ProductView,
};
use oms_domain::events::{EventKind, PricedItem};
use oms_domain::{CustomerId, Money, OrderId, ProductId, Reason};
use serde::Serialize;
use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::Accepted;
use crate::board::{Lag, Stats};
use crate::catalog::{MAX_DELIVERY, MAX_NAME, MAX_STOCK};
use crate::place::{MAX_LINES, MAX_QUANTITY};
use crate::problem::ProblemBody;

/// The routes that need no token.
const OPEN: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/",
    "/assets/{file}",
];

/// An id as the edge accepts it: 1–64 characters of letters, digits, `.`, `_`, `-`.
const ID_PATTERN: &str = r"^[A-Za-z0-9._-]{1,64}$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OMS edge",
        description = "The HTTP API of the order management system. Errors are \
            `application/problem+json` (`type`, `title`, `status`, `detail`); every call but \
            `/healthz`, `/readyz` and `/openapi.json` needs a bearer token (a JWT with the role \
            `customer` or `operator`), and every caller is rate limited (429 with `Retry-After`).",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        place_order,
        list_orders,
        get_order,
        cancel_order,
        ship_order,
        deliver_order,
        order_history,
        get_customer,
        create_customer,
        block_customer,
        unblock_customer,
        get_product,
        create_product,
        set_price,
        restock,
        events,
        order_events,
        stats,
        metrics,
        board,
        board_asset,
        healthz,
        readyz,
        openapi_json,
    ),
    components(
        schemas(
            Accepted,
            CustomerId,
            CustomerView,
            EventKind,
            HistoryEntry,
            Money,
            OrderHistory,
            OrderId,
            OrderLine,
            OrderPage,
            OrderStatus,
            OrderView,
            PricedItem,
            ProblemBody,
            ProductId,
            ProductView,
            Reason,
            Stats,
            Lag,
        ),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            TooLarge,
            UnsupportedMediaType,
            Invalid,
            TooManyRequests,
            Unavailable,
        ),
    ),
    security(("bearer" = [])),
    modifiers(&Security),
    tags(
        (name = "orders", description = "Placing orders and following them through their life"),
        (name = "customers", description = "Customers' records; changes are for operators"),
        (name = "products", description = "The catalog and its stock; changes are for operators"),
        (name = "live", description = "Server-sent events, counters and the live board"),
        (name = "service", description = "Probes, metrics and this description"),
    ),
)]
struct Api;

/// The description, as served and checked in.
pub fn document() -> utoipa::openapi::OpenApi {
    Api::openapi()
}

/// The description as pretty JSON with a final newline: the text of `docs/openapi.json`.
pub fn json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the description always serializes");
    text.push('\n');
    text
}

/// The bearer scheme, and no token on the open routes.
struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT whose `role` is `customer` (its `sub` is the customer id) or \
                         `operator`; `oms-token` mints one for a development installation.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in api.paths.paths.iter_mut() {
            if OPEN.contains(&path.as_str())
                && let Some(get) = item.get.as_mut()
            {
                get.security = Some(Vec::new());
            }
        }
    }
}

/// A problem answer shared by the operations: its name, what it means.
macro_rules! problem {
    ($($name:ident: $description:literal,)*) => {$(
        #[doc = $description]
        struct $name;

        impl<'r> utoipa::ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                let content = ContentBuilder::new().schema(Some(ProblemBody::schema())).build();
                let response = ResponseBuilder::new()
                    .description($description)
                    .content("application/problem+json", content)
                    .build();
                (stringify!($name), response.into())
            }
        }
    )*};
}

problem! {
    BadRequest: "The body is not JSON, or a header is malformed (`Idempotency-Key`: 1 to 255 \
        visible ASCII characters).",
    Unauthorized: "No token, or one that is not valid (`WWW-Authenticate` says why).",
    Forbidden: "The token's role may not do this (a customer acting for another one, or on \
        what only operators do).",
    NotFound: "No such thing, or one the caller may not see.",
    Conflict: "The current state does not allow it (nothing changed).",
    TooLarge: "The body is larger than 64 KiB.",
    UnsupportedMediaType: "The body is not declared as `application/json`.",
    Invalid: "The request is JSON but breaks a rule; `detail` names the field.",
    TooManyRequests: "Over this caller's rate limit; retry after `Retry-After` seconds.",
    Unavailable: "The broker or the service behind it cannot be reached: nothing was done, \
        retry later.",
}

/// `POST /orders`: the original system's `productIds` (one of each), or `items` with
/// quantities; a repeated product adds up.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum PlaceOrderBody {
    ProductIds(OrderOfProductIds),
    Items(OrderOfItems),
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct OrderOfProductIds {
    #[schema(schema_with = customer_id)]
    customer_id: String,
    #[schema(schema_with = total_amount)]
    total_amount: Option<Money>,
    #[schema(schema_with = product_ids)]
    product_ids: Vec<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct OrderOfItems {
    #[schema(schema_with = customer_id)]
    customer_id: String,
    #[schema(schema_with = total_amount)]
    total_amount: Option<Money>,
    #[schema(schema_with = items)]
    items: Vec<ItemBody>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ItemBody {
    #[schema(schema_with = product_id)]
    product_id: String,
    #[schema(schema_with = quantity)]
    quantity: u64,
}

/// `POST /orders/{id}/ship`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct ShipmentBody {
    #[schema(schema_with = tracking_number)]
    tracking_number: String,
}

/// `POST /products`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct NewProductBody {
    #[schema(schema_with = product_id)]
    product_id: String,
    #[schema(schema_with = name)]
    name: String,
    #[schema(schema_with = price)]
    price: Money,
    #[schema(schema_with = available)]
    available: i64,
}

/// `PATCH /products/{id}`: the new price (more than 0, at most 1000000.00); orders already
/// priced keep theirs.
#[derive(ToSchema)]
#[allow(dead_code)]
struct PriceBody {
    #[schema(schema_with = price)]
    price: Money,
}

/// `POST /products/{id}/stock`: a delivery of `add` more.
#[derive(ToSchema)]
#[allow(dead_code)]
struct StockBody {
    #[schema(schema_with = delivery)]
    add: i64,
}

/// `POST /customers`: a new ACTIVE customer.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct NewCustomerBody {
    #[schema(schema_with = customer_id)]
    customer_id: String,
    #[schema(schema_with = name)]
    name: String,
    #[schema(schema_with = credit_limit)]
    credit_limit: Money,
}

// The fields' limits, from the constants the parsers check.

fn id(description: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(ID_PATTERN))
        .description(Some(description))
        .examples([example])
        .build()
}

fn customer_id() -> Object {
    id(
        "A customer's id: 1 to 64 letters, digits, `.`, `_`, `-`.",
        "OMS-Cust-001",
    )
}

fn product_id() -> Object {
    id(
        "A product's id: 1 to 64 letters, digits, `.`, `_`, `-`.",
        "item1",
    )
}

fn tracking_number() -> Object {
    id(
        "The carrier's tracking number: 1 to 64 letters, digits, `.`, `_`, `-`.",
        "1Z999AA10123456784",
    )
}

fn product_ids() -> Array {
    ArrayBuilder::new()
        .items(product_id())
        .min_items(Some(1))
        .max_items(Some(MAX_LINES))
        .description(Some("One of each product."))
        .build()
}

fn items() -> Array {
    ArrayBuilder::new()
        .items(ItemBody::schema())
        .min_items(Some(1))
        .max_items(Some(MAX_LINES))
        .build()
}

/// An amount in a request: as [`Money`] is written, within the parsers' bounds.
fn amount(description: &str, positive: bool) -> Object {
    let most = Money::MAX_AMOUNT.cents() as f64 / 100.0;
    let builder = ObjectBuilder::new()
        .schema_type(Type::Number)
        .maximum(Some(most))
        .description(Some(format!(
            "{description} An exact amount: a JSON number with at most 2 decimal places, \
             at most {}.",
            Money::MAX_AMOUNT
        )))
        .examples([serde_json::json!(25.00)]);
    match positive {
        true => builder.exclusive_minimum(Some(0)),
        false => builder.minimum(Some(0)),
    }
    .build()
}

fn total_amount() -> Object {
    amount(
        "What the client expects to pay, more than 0: the server prices the order, and a \
         different total rejects it with `PRICE_MISMATCH`.",
        true,
    )
}

fn price() -> Object {
    amount("The price of one, more than 0.", true)
}

fn credit_limit() -> Object {
    amount("0 or more: the most one order may cost.", false)
}

fn whole(description: &str, least: i64, most: i64) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(least))
        .maximum(Some(most))
        .description(Some(description))
        .build()
}

fn quantity() -> Object {
    whole("How many.", 1, MAX_QUANTITY as i64)
}

fn available() -> Object {
    whole("How many are in stock.", 0, MAX_STOCK)
}

fn delivery() -> Object {
    whole("How many more were delivered.", 1, MAX_DELIVERY)
}

fn name() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME))
        .description(Some(format!(
            "1 to {MAX_NAME} printable characters (trimmed)."
        )))
        .build()
}

/// The `Idempotency-Key` header of `POST /orders` and `POST /products/{id}/stock`.
#[derive(serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IdempotencyKey {
    /// Makes a retry safe: a request repeated with the same key (1 to 255 visible ASCII
    /// characters) is done once. For orders the key holds for 24 hours, and another order under
    /// the same key is 422.
    #[serde(rename = "Idempotency-Key")]
    #[param(
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]+$"
    )]
    key: String,
}

/// `/healthz` and `/readyz`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
struct Health {
    #[schema(examples("ok", "ready", "not ready"))]
    status: String,
    /// What is not ready (the edge has no consumers: usually absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    down: Option<Vec<String>>,
}

/// Place an order.
///
/// Checks the body, stores the `OrderPlaced` event and answers 202 with the order's id: the
/// order is then PENDING, and `GET /orders/{id}` follows it to CONFIRMED or REJECTED. With an
/// `Idempotency-Key`, a retry of the same order gets the same answer and places nothing more.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    params(
        IdempotencyKey,
    ),
    request_body(content = inline(PlaceOrderBody), content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the order is PENDING.", body = Accepted,
            headers(("Location" = String, description = "`/orders/{orderId}`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn place_order() {}

/// List orders, newest first.
///
/// A customer sees only its own (leave `customerId` out, or give its own); an operator any
/// customer's, or everyone's.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(
        ("customerId" = Option<String>, Query, description = "Whose orders."),
        ("status" = Option<OrderStatus>, Query, description = "Only orders in this status (any case)."),
        ("limit" = Option<i64>, Query,
            description = "Orders per page: 20 if absent, taken into 1 to 500 otherwise."),
        ("after" = Option<String>, Query, description = "The `next` of the page before."),
    ),
    responses(
        (status = 200, description = "A page of orders.", body = OrderPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn list_orders() {}

/// Read an order.
///
/// Answers 200 right after the 202 of its placing (PENDING), then as the saga moves it on.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = OrderId, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn get_order() {}

/// Cancel an order (its customer or an operator), while it is PENDING or CONFIRMED.
///
/// 202 once the request is stored (or was already done): the stock goes back and a charge is
/// refunded once. 409 when the order's status does not allow it.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    params(("id" = OrderId, Path, description = "The order's id.")),
    responses(
        (status = 202, description = "Accepted: the order becomes CANCELLED.", body = Accepted),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn cancel_order() {}

/// Ship a CONFIRMED order (operators).
#[utoipa::path(
    post,
    path = "/orders/{id}/ship",
    tag = "orders",
    params(("id" = OrderId, Path, description = "The order's id.")),
    request_body(content = ShipmentBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: the order becomes SHIPPED.", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn ship_order() {}

/// Deliver a SHIPPED order (operators).
#[utoipa::path(
    post,
    path = "/orders/{id}/deliver",
    tag = "orders",
    params(("id" = OrderId, Path, description = "The order's id.")),
    responses(
        (status = 202, description = "Accepted: the order becomes DELIVERED.", body = Accepted),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn deliver_order() {}

/// Every step of an order, in order.
#[utoipa::path(
    get,
    path = "/orders/{id}/history",
    tag = "orders",
    params(("id" = OrderId, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order's events.", body = OrderHistory),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn order_history() {}

/// Read a customer (a customer reads only its own record).
#[utoipa::path(
    get,
    path = "/customers/{id}",
    tag = "customers",
    params(("id" = String, Path, description = "The customer's id, such as `OMS-Cust-001`.")),
    responses(
        (status = 200, description = "The customer.", body = CustomerView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn get_customer() {}

/// Create a customer (operators).
#[utoipa::path(
    post,
    path = "/customers",
    tag = "customers",
    request_body(content = NewCustomerBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = CustomerView,
            headers(("Location" = String, description = "`/customers/{customerId}`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn create_customer() {}

/// Block a customer (operators): its new orders are rejected with `CUSTOMER_BLOCKED`.
#[utoipa::path(
    post,
    path = "/customers/{id}/block",
    tag = "customers",
    params(("id" = String, Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "The customer, BLOCKED.", body = CustomerView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn block_customer() {}

/// Unblock a customer (operators).
#[utoipa::path(
    post,
    path = "/customers/{id}/unblock",
    tag = "customers",
    params(("id" = String, Path, description = "The customer's id.")),
    responses(
        (status = 200, description = "The customer, ACTIVE.", body = CustomerView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn unblock_customer() {}

/// Read a product: its price and the stock available.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = String, Path, description = "The product's id, such as `item1`.")),
    responses(
        (status = 200, description = "The product.", body = ProductView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn get_product() {}

/// Create a product (operators).
#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    request_body(content = NewProductBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created.", body = ProductView,
            headers(("Location" = String, description = "`/products/{productId}`"))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn create_product() {}

/// Change a product's price (operators).
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    params(("id" = String, Path, description = "The product's id.")),
    request_body(content = PriceBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The product at its new price.", body = ProductView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn set_price() {}

/// Add delivered stock (operators).
#[utoipa::path(
    post,
    path = "/products/{id}/stock",
    tag = "products",
    params(
        ("id" = String, Path, description = "The product's id."),
        IdempotencyKey,
    ),
    request_body(content = StockBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The product with its new stock.", body = ProductView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Invalid),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn restock() {}

/// Every order's status changes, live (`event: status`, `id`: the event's sequence in ORDERS;
/// `event: stats` every 2 s). Resumes after `Last-Event-ID`. For operators. An event stream
/// does not end, so the API checks leave it out; `e2e/tests/board.rs` tests it.
#[utoipa::path(
    get,
    path = "/events",
    tag = "live",
    params(
        ("access_token" = Option<String>, Query, description = "The bearer token, for clients that cannot send a header (a browser's EventSource)."),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event."),
    ),
    responses(
        (status = 200, description = "The stream.", content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn events() {}

/// One order's status changes, live, from its placement on. For its customer or an operator.
#[utoipa::path(
    get,
    path = "/orders/{id}/events",
    tag = "live",
    params(
        ("id" = OrderId, Path, description = "The order's id."),
        ("access_token" = Option<String>, Query, description = "The bearer token, for clients that cannot send a header (a browser's EventSource)."),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event."),
    ),
    responses(
        (status = 200, description = "The stream.", content_type = "text/event-stream", body = String),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
#[allow(dead_code)]
fn order_events() {}

/// The board's counters: orders per status, dead letters, each consumer's backlog. For
/// operators.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "live",
    responses(
        (status = 200, description = "The counters; what cannot be read now is null.", body = Stats),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
    ),
)]
#[allow(dead_code)]
fn stats() {}

/// Prometheus metrics (text exposition format 0.0.4). For operators, and for clients on the
/// edge's own machine unless `telemetry.metrics_loopback` is off.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
)]
#[allow(dead_code)]
fn metrics() {}

/// The live order board (HTML).
#[utoipa::path(
    get,
    path = "/",
    tag = "live",
    security(()),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 429, response = TooManyRequests),
    ),
)]
#[allow(dead_code)]
fn board() {}

/// One of the board's files (script, style sheet).
#[utoipa::path(
    get,
    path = "/assets/{file}",
    tag = "live",
    security(()),
    params(("file" = String, Path, description = "The file's name.")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "image/svg+xml"),
        )),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
    ),
)]
#[allow(dead_code)]
fn board_asset() {}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses((status = 200, description = "Alive.", body = Health)),
)]
#[allow(dead_code)]
fn healthz() {}

/// Readiness: connected to the broker with the topology in place.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "Not ready (yet).", body = Health),
    ),
)]
#[allow(dead_code)]
fn readyz() {}

/// This description (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses(
        (status = 200, description = "The OpenAPI document.", content_type = "application/json",
            body = Object),
        (status = 429, response = TooManyRequests),
    ),
)]
#[allow(dead_code)]
fn openapi_json() {}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    /// docs/openapi.json is what the code describes; `OMS_BLESS=1` writes it anew.
    #[test]
    fn the_checked_in_description_is_the_generated_one() {
        let generated = json();
        if std::env::var_os("OMS_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(CHECKED_IN, &generated).expect("write docs/openapi.json");
        }
        let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json differs from the description the code generates \
             (edge/src/openapi.rs and the types it names); regenerate it with\n  \
             OMS_BLESS=1 cargo test -p oms-edge --lib openapi\nand commit it"
        );
    }

    #[test]
    fn every_route_is_described_and_secured_but_the_open_ones() {
        let api = document();
        let value = serde_json::to_value(&api).unwrap();
        assert_eq!(value["openapi"], "3.1.0");
        let operations: Vec<(String, String)> = value["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let expected = [
            ("POST", "/orders"),
            ("GET", "/orders"),
            ("GET", "/orders/{id}"),
            ("POST", "/orders/{id}/cancel"),
            ("POST", "/orders/{id}/ship"),
            ("POST", "/orders/{id}/deliver"),
            ("GET", "/orders/{id}/history"),
            ("GET", "/customers/{id}"),
            ("POST", "/customers"),
            ("POST", "/customers/{id}/block"),
            ("POST", "/customers/{id}/unblock"),
            ("GET", "/products/{id}"),
            ("POST", "/products"),
            ("PATCH", "/products/{id}"),
            ("POST", "/products/{id}/stock"),
            ("GET", "/events"),
            ("GET", "/orders/{id}/events"),
            ("GET", "/stats"),
            ("GET", "/metrics"),
            ("GET", "/"),
            ("GET", "/assets/{file}"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/openapi.json"),
        ];
        let mut want: Vec<(String, String)> = expected
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        let mut got = operations.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        for (method, path) in operations {
            let op = &value["paths"][&path][method.to_lowercase()];
            let method = warp::http::Method::from_bytes(method.as_bytes()).unwrap();
            let limited = crate::server::Entry::of(&method, &path) == crate::server::Entry::Limited;
            assert_eq!(
                op["responses"]["429"].is_object(),
                limited,
                "{method} {path}: 429 documented exactly where the rate limit applies"
            );
            let security = &op["security"];
            if OPEN.contains(&path.as_str()) {
                assert_eq!(security, &serde_json::json!([]), "{method} {path}");
            } else {
                assert!(
                    security.is_null(),
                    "{method} {path} takes the global bearer"
                );
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} says it may answer 401"
                );
            }
        }
        assert_eq!(value["security"], serde_json::json!([{"bearer": []}]));
    }

    #[test]
    fn answers_are_described_as_they_serialize() {
        let value = serde_json::to_value(document()).unwrap();
        let schemas = &value["components"]["schemas"];
        // Money is a JSON number, not an object or a string of cents.
        assert_eq!(schemas["Money"]["type"], "number");
        // camelCase, and what may be left out is not required.
        let order = &schemas["OrderView"];
        let required: Vec<&str> = order["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for field in [
            "orderId",
            "customerId",
            "items",
            "status",
            "createdAt",
            "updatedAt",
        ] {
            assert!(required.contains(&field), "{field} is required");
        }
        for field in ["totalAmount", "reason", "trackingNumber"] {
            assert!(!required.contains(&field), "{field} may be left out");
            assert!(
                order["properties"][field].is_object(),
                "{field} is described"
            );
        }
        // `next` is always there, `null` on the last page.
        assert!(
            schemas["OrderPage"]["required"]
                .as_array()
                .unwrap()
                .contains(&"next".into())
        );
        let statuses = serde_json::to_value(&schemas["OrderStatus"]["enum"]).unwrap();
        assert_eq!(
            statuses,
            serde_json::json!([
                "PENDING",
                "CONFIRMED",
                "REJECTED",
                "SHIPPED",
                "DELIVERED",
                "CANCELLED"
            ])
        );
        assert_eq!(
            schemas["HistoryEntry"]["properties"]["type"]["$ref"],
            "#/components/schemas/EventKind"
        );
    }
}
