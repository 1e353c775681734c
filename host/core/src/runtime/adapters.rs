//! The operators the runtime adds around user code: the head of a source's chain and
//! the writer of a sink.

use crate::batch::Batch;
use crate::connector::{ConnectorError, Sink};
use crate::operator::{Collector, Operator, OperatorContext, OperatorError, StateContext};

/// Passes a source's batches into its chain.
pub(super) struct SourceHead;

impl Operator for SourceHead {
    fn process_batch(
        &mut self,
        batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        out.collect(batch);
        Ok(())
    }
}

/// Writes a chain's events to a sink.
pub(super) struct SinkOperator {
    pub(super) sink: Box<dyn Sink>,
    pub(super) context: String,
    /// Whether the job checkpoints (then the sink writes in transactions).
    pub(super) checkpointing: bool,
}

impl SinkOperator {
    fn error(&self, e: ConnectorError) -> OperatorError {
        OperatorError::Fault {
            context: self.context.clone(),
            message: e.0,
        }
    }
}

impl Operator for SinkOperator {
    fn initialize_state(&mut self, state: StateContext) -> Result<(), OperatorError> {
        if self.checkpointing {
            self.sink
                .begin_transactions(&state.operator_state)
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }
    fn snapshot_operator_state(
        &mut self,
        checkpoint: u64,
    ) -> Result<Option<Vec<u8>>, OperatorError> {
        self.sink
            .pre_commit(checkpoint)
            .map(Some)
            .map_err(|e| self.error(e))
    }
    fn notify_checkpoint_complete(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        self.sink.commit(checkpoint).map_err(|e| self.error(e))
    }
    fn open(&mut self, ctx: &OperatorContext) -> Result<(), OperatorError> {
        self.context = ctx.to_string().replacen("operator", "sink", 1);
        Ok(())
    }
    fn process_batch(&mut self, batch: Batch, _: &mut dyn Collector) -> Result<(), OperatorError> {
        self.sink.write_batch(&batch).map_err(|e| self.error(e))
    }
    fn process_watermark(&mut self, _: i64, _: &mut dyn Collector) -> Result<(), OperatorError> {
        Ok(())
    }
    fn finish(&mut self, _: &mut dyn Collector) -> Result<(), OperatorError> {
        self.sink.finish().map_err(|e| self.error(e))
    }
}
