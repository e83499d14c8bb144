//! The ledger decides between a charge and the end of its order, on a real nats-server: the
//! first of the two stands, whichever it is.

use async_nats::jetstream::{self, kv};
use oms_domain::{Money, OrderId};
use oms_payment::gateway::{self, Entry};
use oms_testkit::{NatsServer, TestBroker};
use oms_topology::identity::Identity;

async fn ledger(nats: &NatsServer) -> kv::Store {
    nats.provision(&nats.config()).await;
    let js = jetstream::new(nats.connect_as(Identity::Payment).await);
    js.get_key_value(oms_topology::PAYMENT_LEDGER)
        .await
        .expect("the ledger")
}

#[tokio::test]
async fn an_order_that_ended_first_is_never_charged() {
    let nats = NatsServer::start();
    let ledger = ledger(&nats).await;
    let order = OrderId::new();
    assert_eq!(gateway::void_or_refund(&ledger, order).await.unwrap(), None);
    let amount = Money::from_cents(2_500);
    assert_eq!(gateway::charge(&ledger, order, amount).await.unwrap(), None);
    assert_eq!(gateway::charge(&ledger, order, amount).await.unwrap(), None);
    assert_eq!(gateway::void_or_refund(&ledger, order).await.unwrap(), None);
    let entry = ledger.get(order.to_string()).await.unwrap().unwrap();
    assert!(matches!(Entry::read(&entry).unwrap(), Entry::Voided(_)));
    let refund = ledger.get(gateway::refund_key(order)).await.unwrap();
    assert!(refund.is_none(), "no refund without a charge");
}

#[tokio::test]
async fn a_charge_that_came_first_is_refunded_once() {
    let nats = NatsServer::start();
    let ledger = ledger(&nats).await;
    let order = OrderId::new();
    let amount = Money::from_cents(259_999);
    let charge = gateway::charge(&ledger, order, amount)
        .await
        .unwrap()
        .expect("charged");
    let refund = gateway::void_or_refund(&ledger, order)
        .await
        .unwrap()
        .expect("refunded");
    assert_eq!(
        (refund.amount, &refund.charge_id),
        (amount, &charge.charge_id)
    );
    // Again: the same refund, not a second one; a charge now finds the first charge.
    let again = gateway::void_or_refund(&ledger, order).await.unwrap();
    assert_eq!(again, Some(refund));
    let recharge = gateway::charge(&ledger, order, amount).await.unwrap();
    assert_eq!(recharge, Some(charge));
}
