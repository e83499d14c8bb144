//! Operator commands of the OMS: `oms-provision` (broker set-up), `oms-dlq` (dead letters) and
//! `oms-audit` (the money and stock invariants of every order, [`audit`]).

pub mod audit;
