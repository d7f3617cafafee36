//! SQL for analysts over the Postgres wire protocol (datafusion-postgres / pgwire), locked
//! down: password authentication for one configured user (no password only on loopback, where
//! the configuration allows an empty `sql.password`), and only read-only statements.
//!
//! Every statement is checked twice: against an allowlist on the parsed statement (SELECT,
//! EXPLAIN, SHOW, and what clients send on connect: SET of client settings, BEGIN/COMMIT,
//! cursors), then its DataFusion plan against the same read-only options as `cluetrain sql`
//! (no DDL, no DML, no COPY, no statements), which catches `SELECT ... INTO` and
//! `EXPLAIN ANALYZE INSERT`. Refusals are SQLSTATE 25006 (read_only_sql_transaction) with a
//! message that says what is allowed. `SET datafusion.*` is refused because the session is
//! shared by every connection. The server runs on a runtime of its own
//! ([`SqlServer::start`]), so a heavy query cannot stall ingestion, and every query under the
//! memory limit, row cap and timeout of [`crate::sql::history_context`]
//! ([`crate::sql_limits`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::process_socket;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

// ---------- (a) password auth: one configured user ----------
#[derive(Debug, Clone)]
struct SingleUser {
    user: Arc<str>,
    password: Arc<str>,
}

#[async_trait]
impl AuthSource for SingleUser {
    // Cleartext handler compares the returned bytes with what the client sent.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        match login.user() {
            Some(u) if u == &*self.user => {
                Ok(Password::new(None, self.password.as_bytes().to_vec()))
            }
            other => Err(PgWireError::InvalidPassword(
                other.unwrap_or_default().to_owned(),
            )),
        }
    }
}

// ---------- (b) read-only statement guard ----------
fn read_only_error(what: impl std::fmt::Display) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "25006".to_owned(), // read_only_sql_transaction
        format!("read-only server: {what} is not allowed (only SELECT, SHOW, EXPLAIN)"),
    )))
}

fn leading_words(stmt: &Statement) -> String {
    let sql = stmt.to_string();
    let words: Vec<&str> = sql.split_whitespace().take(3).collect();
    match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
        Some("CREATE")
            if words
                .get(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("EXTERNAL")) =>
        {
            words.join(" ").to_ascii_uppercase()
        }
        Some("CREATE" | "DROP" | "ALTER") => {
            words[..words.len().min(2)].join(" ").to_ascii_uppercase()
        }
        Some(w) => w.to_owned(),
        None => "empty statement".to_owned(),
    }
}

fn set_allowed(set: &Set) -> bool {
    match set {
        // Session-local client settings (DateStyle, application_name, extra_float_digits, ...)
        // are handled by SetShowHook. `SET datafusion.*` would mutate the *shared*
        // SessionContext config for every connection, so refuse it.
        Set::SingleAssignment { variable, .. } => !variable
            .to_string()
            .to_ascii_lowercase()
            .starts_with("datafusion."),
        Set::SetTimeZone { .. }
        | Set::SetNames { .. }
        | Set::SetNamesDefault { .. }
        | Set::SetTransaction { .. } => true,
        _ => false,
    }
}

/// AST-level allowlist. Applied to every statement in both protocols.
fn check_statement(stmt: &Statement) -> PgWireResult<()> {
    let ok = match stmt {
        Statement::Query(_) | Statement::ExplainTable { .. } => true,
        Statement::Explain { statement, .. } => return check_statement(statement),
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCreate { .. } => true,
        // answered by TransactionStatementHook without touching DataFusion
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => true,
        Statement::Set(set) => set_allowed(set),
        // psql's FETCH_COUNT mode; DECLARE's query is plan-checked below
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(read_only_error(leading_words(stmt)))
    }
}

/// Plan-level check: no DDL / DML / COPY / DataFusion statements anywhere in the plan
/// (catches `SELECT ... INTO`, `EXPLAIN ANALYZE INSERT ...`, data-modifying CTEs, ...).
fn verify_plan(plan: &LogicalPlan) -> PgWireResult<()> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| read_only_error(e.strip_backtrace()))
}

async fn plan_and_verify(stmt: Statement, ctx: &SessionContext) -> PgWireResult<()> {
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    verify_plan(&plan)
}

async fn verify_declare(stmt: &Statement, ctx: &SessionContext) -> PgWireResult<()> {
    if let Statement::Declare { stmts } = stmt {
        for d in stmts {
            if let Some(q) = &d.for_query {
                plan_and_verify(Statement::Query(q.clone()), ctx).await?;
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
struct ReadOnlyHook;

#[async_trait]
impl QueryHook for ReadOnlyHook {
    // Simple protocol (psql): called once per ';'-separated statement, before execution.
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let res = async {
            check_statement(statement)?;
            match statement {
                Statement::Query(_) | Statement::Explain { .. } => {
                    plan_and_verify(statement.clone(), ctx).await
                }
                Statement::Declare { .. } => verify_declare(statement, ctx).await,
                _ => Ok(()),
            }
        }
        .await;
        // None = "not handled here": fall through to the next hook / normal execution.
        res.err().map(Err)
    }

    // Extended protocol, Parse message: reject before anything is planned.
    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        check_statement(statement).err().map(Err)
    }

    // Extended protocol, Execute message: we get the plan built at Parse time.
    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let res = async {
            check_statement(statement)?;
            verify_plan(plan)?;
            verify_declare(statement, ctx).await
        }
        .await;
        res.err().map(Err)
    }
}

// ---------- (a') no password: trust, on loopback only ----------
/// Connections without authentication: used when `sql.password` is empty, which the
/// configuration allows only when `sql.listen` is a loopback address.
#[derive(Debug)]
struct Trust {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Trust {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(self.connections.clone())
    }
}

/// The startup handler of one connection: password or trust.
enum Startup {
    Password(Box<CleartextPasswordAuthStartupHandler<SingleUser, DefaultServerParameterProvider>>),
    Trust(Trust),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Password(h) => h.on_startup(client, message).await,
            Startup::Trust(h) => h.on_startup(client, message).await,
        }
    }
}

// ---------- handler factory (HandlerFactory in the crate is private) ----------
struct ReadOnlyHandlers {
    session: Arc<DfSessionService>,
    auth: SingleUser,
    connections: Arc<ConnectionManager>,
}

impl PgWireServerHandlers for ReadOnlyHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }
    // Called once per connection: build a fresh (stateful) startup handler each time.
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        if self.auth.password.is_empty() {
            return Arc::new(Startup::Trust(Trust {
                connections: self.connections.clone(),
            }));
        }
        Arc::new(Startup::Password(Box::new(
            CleartextPasswordAuthStartupHandler::new(
                self.auth.clone(),
                DefaultServerParameterProvider::default(),
            )
            .with_connection_manager(self.connections.clone()),
        )))
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.connections.clone()))
    }
}

// ---------- (c)+(d) setup, bind, serve until shutdown ----------
/// Serves `ctx` read-only on `listener` until `shutdown` fires (or its sender is dropped).
pub async fn serve_read_only(
    ctx: Arc<SessionContext>,
    listener: TcpListener,
    user: &str,
    password: &str,
    mut shutdown: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    // (d) pg_catalog schema + pg UDFs (NOT done by datafusion_postgres::serve*).
    let catalog = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    setup_pg_catalog(&ctx, &catalog, EmptyContextProvider).map_err(std::io::Error::other)?;

    // Our guard first; then the crate's built-in hooks (which `new_with_hooks` does NOT add for you).
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(ReadOnlyHook),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let handlers = Arc::new(ReadOnlyHandlers {
        session: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
        auth: SingleUser {
            user: user.into(),
            password: password.into(),
        },
        connections: Arc::new(ConnectionManager::new()),
    });

    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break, // fires on send() or when the Sender is dropped
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => {
                    let h = handlers.clone();
                    conns.spawn(async move {
                        // None = no TLS
                        let _ = process_socket(socket, None, h).await;
                    });
                }
                Err(_e) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener); // stop accepting
    // give in-flight connections a grace period, then cut them
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        conns.shutdown().await; // abort_all + wait
    }
    Ok(())
}

/// A running SQL server on its own thread and runtime.
pub struct SqlServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SqlServer {
    /// Opens the history under `location`, binds `config.sql.listen` and serves on a thread
    /// with its own Tokio runtime. Errors name the setting.
    /// `live`: the running pipeline's tables, when there is one.
    pub fn start(
        location: &str,
        sql: &model::config::SqlConfig,
        live: Option<Arc<crate::live_tables::LiveTables>>,
    ) -> anyhow::Result<Self> {
        let limits = crate::sql::QueryLimits {
            memory_bytes_max: sql.memory_bytes_max,
            timeout: sql.query_timeout,
            rows_max: sql.rows_max,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cluetrain-sql")
            .enable_all()
            .build()
            .context("starting the SQL runtime")?;
        let (ctx, listener) = rt.block_on(async {
            let ctx = crate::sql::history_context(location, limits, live.as_ref()).await?;
            let listener = TcpListener::bind(sql.listen).await.with_context(|| {
                format!(
                    "sql.listen {}: cannot bind the Postgres-wire server",
                    sql.listen
                )
            })?;
            anyhow::Ok((ctx, listener))
        })?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let (user, password) = (sql.user.clone(), sql.password.clone());
        let thread = std::thread::Builder::new()
            .name("cluetrain-sql".into())
            .spawn(move || {
                let r = rt.block_on(serve_read_only(
                    Arc::new(ctx),
                    listener,
                    &user,
                    &password,
                    rx,
                ));
                if let Err(e) = r {
                    tracing::error!(error = %e, "SQL server stopped");
                }
            })
            .context("starting the SQL server thread")?;
        Ok(SqlServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, gives open connections 5 s, and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SqlServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
