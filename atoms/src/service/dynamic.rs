//! Type erasure: a boxed `Service` the host can hold in one list.

use futures::future::BoxFuture;

use super::service::{Service, ServiceContext, ServiceError, Step};

pub(crate) trait DynService: Send {
    fn name(&self) -> &str;
    fn dependencies(&self) -> Vec<String>;
    fn start<'a>(&'a mut self, ctx: &'a ServiceContext) -> BoxFuture<'a, Result<(), ServiceError>>;
    fn work<'a>(&'a mut self, ctx: &'a ServiceContext)
    -> BoxFuture<'a, Result<Step, ServiceError>>;
    fn stop<'a>(&'a mut self, ctx: &'a ServiceContext) -> BoxFuture<'a, Result<(), ServiceError>>;
}

impl<S: Service> DynService for S {
    fn name(&self) -> &str {
        Service::name(self)
    }

    fn dependencies(&self) -> Vec<String> {
        Service::dependencies(self)
    }

    fn start<'a>(&'a mut self, ctx: &'a ServiceContext) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(Service::start(self, ctx))
    }

    fn work<'a>(
        &'a mut self,
        ctx: &'a ServiceContext,
    ) -> BoxFuture<'a, Result<Step, ServiceError>> {
        Box::pin(Service::work(self, ctx))
    }

    fn stop<'a>(&'a mut self, ctx: &'a ServiceContext) -> BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(Service::stop(self, ctx))
    }
}
